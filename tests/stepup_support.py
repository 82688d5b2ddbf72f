"""Helpers of the step-up tests (imported by name: ``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class RecordingAudit:
    """An ``AuditRecorder`` that keeps every event in memory, for assertions."""

    events: list[tuple[str, str | None, dict[str, object]]] = field(default_factory=list)

    async def record(
        self,
        type: str,
        *,
        subject_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> object:
        self.events.append((type, subject_id, dict(data or {})))
        return None

    def of(self, type: str) -> list[dict[str, object]]:
        return [data for kind, _, data in self.events if kind == type]

    def text(self) -> str:
        return json.dumps(self.events, default=str)

    def reasons(self) -> list[str]:
        return [str(d["reason"]) for d in self.of("verification_failed")]
