"""The policy in force. A reload that fails keeps the previous policy (CONTRACT §2)."""

from __future__ import annotations

from piigate.errors import PolicyError
from piigate.policy.compiled import CompiledPolicy, compile_policy
from piigate.policy.loader import load_policy

__all__ = ["PolicyHolder"]


class PolicyHolder:
    def __init__(self, policy: CompiledPolicy | None = None, *, path: str | None = None) -> None:
        self._policy = policy
        self.path = path
        self.last_error: list[str] = []

    @classmethod
    def from_file(cls, path: str) -> PolicyHolder:
        """Load at start: raises PolicyError, so the process refuses to start on a bad file."""
        return cls(compile_policy(load_policy(path)), path=path)

    @property
    def current(self) -> CompiledPolicy | None:
        return self._policy

    def level_for_acr(self, acr: str | None) -> str | None:
        """The level an ``acr`` (or alias) names in the policy in force; None without one."""
        return self._policy.level_for_acr(acr) if self._policy is not None else None

    def reload(self) -> CompiledPolicy:
        """Swap in the file's new content, or raise PolicyError and keep serving the old one."""
        if self.path is None:
            raise PolicyError(["no policy file to reload"])
        try:
            compiled = compile_policy(load_policy(self.path))
        except PolicyError as exc:
            self.last_error = exc.errors
            raise
        self._policy = compiled
        self.last_error = []
        return compiled
