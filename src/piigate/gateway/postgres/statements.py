"""What happens to a client's statement: read, ruled on, stepped up, run or refused.

:class:`Gatekeeper` holds the steps every session shares. A simple query is ruled on whole; a
prepared statement is read when it is parsed and ruled on at each ``Execute``, with the values
bound to it (a ``max_age: 0`` approval is for those values only). ``SET piigate.otp = 'code'``
answers the session's last step-up with a TOTP or recovery code and is never sent to the
database; no other statement may name ``piigate.otp``.

A step-up sends a NOTICE at once: what is needed and why, the number to pick if a push went to
the person's device, the ``SET piigate.otp`` line, and the step-up page. The statement waits up
to ``approval_wait`` (a cancel stops the wait), then runs, or fails with SQLSTATE ``28SU1`` and
the same instructions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import TYPE_CHECKING, Final

import structlog

from piigate.errors import PiigateError
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.desk import Desk
from piigate.gateway.postgres.judge import (
    Ruling,
    Touches,
    changes_session,
    every_class,
    nothing_to_ask,
    rule,
)
from piigate.gateway.postgres.replies import PARSING, Expect, Pending, Result
from piigate.gateway.postgres.rows import RowMask, row_mask
from piigate.model import ChallengeState, Outcome

if TYPE_CHECKING:
    from piigate.gateway.postgres.session import ClientSession, SessionLinks

__all__ = ["STEP_UP_SQLSTATE", "Gatekeeper", "error", "result_plan"]

log = structlog.get_logger("piigate.gateway.postgres")

STEP_UP_SQLSTATE: Final = "28SU1"
_OTP_SET: Final = re.compile(
    r"\s*set\s+(?:session\s+)?piigate\.otp\s*(?:=|\s+to\s+)\s*'([^']{1,64})'\s*;?\s*", re.I
)
_NAMES_OTP: Final = re.compile(r"piigate\s*\.\s*(?:otp|unmask)", re.I)
_UNMASK_SET: Final = re.compile(
    r"\s*set\s+(?:session\s+)?piigate\.unmask\s*(?:=|\s+to\s+)\s*'?(on|off|true|false)'?\s*;?\s*",
    re.I,
)
_POLL: Final = 0.25
_MAX_GRANTS: Final = 8
_MAX_ROUNDS: Final = 3
_ALLOWED: Final = Ruling(Outcome.ALLOW)  # what ``rule`` rules when there is nothing to ask


def error(code: str, message: str, severity: str = "ERROR", **extra: str) -> be.ErrorResponse:
    fields = [("S", severity), ("V", severity), ("C", code), ("M", message)]
    fields += [(k, v) for k, v in extra.items()]
    return be.ErrorResponse(tuple(fields))


def result_plan(links: SessionLinks, touches: Touches, masked: frozenset[str]) -> Result:
    """How the rows of a statement with ``touches`` are shown when ``masked`` is masked. Its
    errors and notices are scrubbed unless it runs with nothing masked (every class it
    touches released)."""
    scrub = touches.any and bool(masked)
    hit = masked & touches.reads
    if not hit:
        return Result(scrub=scrub)
    outputs = touches.outputs

    def masker(description: be.RowDescription) -> RowMask | None:
        carried: list[frozenset[str]] = []
        stored: list[frozenset[str]] = []  # the catalogued column itself, by the server's word
        for i, f in enumerate(description.fields):
            classes: set[str] = set()
            origin: frozenset[str] = frozenset()
            if f.table_oid in links.oid_tables:
                found = links.oid_columns.get((f.table_oid, f.column))
                if found is not None:
                    classes.add(found)
                    origin = frozenset({found})
            elif outputs is None or i >= len(outputs):
                classes |= hit  # a column nothing vouches for
            if outputs is not None and i < len(outputs):
                classes |= outputs[i]
            carried.append(frozenset(classes))
            stored.append(origin)
        return row_mask(description.fields, carried, hit, links.config.masks, stored)

    return Result(masker=masker, scrub=True)


class Gatekeeper:
    def __init__(self, desk: Desk, approval_wait: float) -> None:
        self.desk = desk
        self.approval_wait = approval_wait
        # piigate_gateway_statement_seconds{step, ruling}: the time each ruling took
        self.timings = desk.services.metrics.statements

    # -- the simple query protocol --------------------------------------------------------------
    async def query(self, session: ClientSession, message: fe.Query) -> None:
        session.reset_unnamed()
        sql = message.sql
        if _NAMES_OTP.search(sql):
            await self._otp(session, sql)
            return
        started = time.perf_counter()
        if session.path_stale:  # an Execute before it may have changed the search path
            touches = [every_class("other", session.links.catalog, "the search path changed")]
        else:
            touches = await session.cursors.resolve(sql, await session.read(sql), session.read)
        ruling = await self._ruling(session, touches, sql)
        self._run_query(session, message, touches, ruling, started)

    def query_now(self, session: ClientSession, message: fe.Query) -> bool:
        """``query`` without waiting, when its reading is cached and there is nothing to ask
        of the engine (no catalogued class, nothing refused); False: nothing was done."""
        sql = message.sql
        if session.path_stale or _NAMES_OTP.search(sql):
            return False
        started = time.perf_counter()
        touches = session.cached_reading(sql)
        if touches is None or not nothing_to_ask(touches) or not session.cursors.passes(touches):
            return False
        session.reset_unnamed()
        self._run_query(session, message, touches, _ALLOWED, started)
        return True

    def _run_query(
        self,
        session: ClientSession,
        message: fe.Query,
        touches: list[Touches],
        ruling: Ruling,
        started: float,
    ) -> None:
        self._timed("query", ruling, started)
        if ruling.outcome is not Outcome.ALLOW:
            session.refuse(self._refusal(ruling), extended=False)
            return
        self._masked_notice(session, ruling, touches)
        results = [session.plan_for(t, ruling.masked) for t in touches]
        overflow = Result(scrub=True) if ruling.masked or not touches else None
        session.expect(Pending(Expect.QUERY, results=results, overflow=overflow))
        session.forward(message)
        if session.path_stale or not touches or changes_session(touches):
            if any(t.kind == "copy_from" for t in touches):
                session.reread_after_copy = "now"  # the server takes no query in COPY FROM
            else:
                session.reread_search_path()

    # -- the extended query protocol ------------------------------------------------------------
    async def parse(self, session: ClientSession, message: fe.Parse) -> None:
        if _NAMES_OTP.search(message.sql) or session.path_stale:
            text = (
                "send a Sync after a statement that changes the session"
                if session.path_stale
                else "run SET piigate.otp = 'code' as a simple query"
            )
            session.refuse(error("0A000", text), extended=True)
            return
        self._run_parse(session, message, await session.read(message.sql))

    def parse_now(self, session: ClientSession, message: fe.Parse) -> bool:
        """``parse`` without waiting, when its reading is cached; False: nothing was done."""
        if session.path_stale or _NAMES_OTP.search(message.sql):
            return False
        touches = session.cached_reading(message.sql)
        if touches is None:
            return False
        self._run_parse(session, message, touches)
        return True

    @staticmethod
    def _run_parse(session: ClientSession, message: fe.Parse, touches: list[Touches]) -> None:
        session.statements[message.statement] = (message.sql, touches, session.search_path)
        session.expect(PARSING)
        session.forward(message)

    async def execute(self, session: ClientSession, message: fe.Execute) -> None:
        started = time.perf_counter()
        sql, touches, parameters = await session.touches_of_portal(message.portal)
        touches = await session.cursors.resolve(sql, touches, session.read)
        ruling = await self._ruling(session, touches, sql, parameters)
        self._run_execute(session, message, touches, ruling, started)

    def execute_now(self, session: ClientSession, message: fe.Execute) -> bool:
        """``execute`` without waiting, when the portal's statement was read with the search
        path in force and there is nothing to ask of the engine; False: nothing was done."""
        started = time.perf_counter()
        touches = session.portal_reading(message.portal)
        if touches is None or not nothing_to_ask(touches) or not session.cursors.passes(touches):
            return False
        self._run_execute(session, message, touches, _ALLOWED, started)
        return True

    def _run_execute(
        self,
        session: ClientSession,
        message: fe.Execute,
        touches: list[Touches],
        ruling: Ruling,
        started: float,
    ) -> None:
        self._timed("execute", ruling, started)
        if ruling.outcome is not Outcome.ALLOW:
            session.refuse(self._refusal(ruling), extended=True)
            return
        self._masked_notice(session, ruling, touches)
        if len(touches) == 1:
            result = session.plan_for(touches[0], ruling.masked)
        else:  # not one statement: no plan can be trusted
            result = Result(scrub=True)
        session.run_execute(message, result)
        if changes_session(touches):
            if any(t.kind == "copy_from" for t in touches):  # the server ignores Syncs in it
                session.reread_after_copy = "sync"
            else:
                session.path_stale = True  # read again after the next Sync

    def _timed(self, step: str, ruling: Ruling, started: float) -> None:
        """Count the ruling's time; a masked allow counts as ``mask``."""
        name = "mask" if ruling.outcome is Outcome.ALLOW and ruling.masked else ruling.outcome.value
        self.timings.observe((step, name), time.perf_counter() - started)

    @staticmethod
    def _masked_notice(session: ClientSession, ruling: Ruling, touches: list[Touches]) -> None:
        """Once a session, with the first masked result: how to see it unmasked."""
        if not ruling.masked or session.told_masked:
            return
        shown = ruling.masked & frozenset().union(*(t.reads for t in touches))
        if not shown:
            return
        session.told_masked = True
        notice = be.NoticeResponse(
            (
                ("S", "NOTICE"),
                ("V", "NOTICE"),
                ("C", "00000"),
                ("M", f"piigate masks {', '.join(sorted(shown))} in these results"),
                ("H", "run SET piigate.unmask = on to step up and see them"),
            )
        )
        session.send(notice)

    # -- rulings and step-ups -------------------------------------------------------------------
    async def _ruling(
        self,
        session: ClientSession,
        touches: list[Touches],
        sql: str,
        parameters: tuple[bytes | None, ...] = (),
    ) -> Ruling:
        if nothing_to_ask(touches):
            return _ALLOWED
        assert session.caller is not None
        binding = session.binding(sql, parameters)
        ruling = Ruling(Outcome.DENY, what="the statement")
        for _ in range(_MAX_ROUNDS):
            try:
                ruling = await rule(
                    touches,
                    self.desk.decide,
                    caller=session.caller,
                    context=session.context,
                    grants=tuple(session.grants),
                    binding=binding,
                    unmask=session.unmask,
                )
            except Exception as exc:  # the engine or its store: fail closed
                log.error("pg_decision_failed", error=type(exc).__name__)
                return Ruling(Outcome.DENY, what="the statement (the gateway cannot decide now)")
            if ruling.outcome is not Outcome.STEP_UP:
                return ruling
            grant = await self._step_up(session, ruling)
            if grant is None:
                return ruling
            session.grants = [*session.grants[-(_MAX_GRANTS - 1) :], grant]
        return ruling

    async def _step_up(self, session: ClientSession, ruling: Ruling) -> str | None:
        """Wait for the approval of the ruling's challenge; its grant token, or None."""
        decision = ruling.decision
        assert session.caller is not None and decision is not None
        challenge = decision.challenge
        if challenge is None:
            return None
        session.challenge_id = challenge.id
        number = None
        if "push" in challenge.requirement.methods:
            number = await self.desk.push(challenge.id, session.caller)
        session.send(self._notice(ruling, number))
        await session.client.drain()
        session.cancelled.clear()
        deadline = time.monotonic() + self.approval_wait
        while time.monotonic() < deadline and not session.cancelled.is_set():
            if session.client.at_eof():  # the client has gone: no one waits for the answer
                return None
            try:
                state = await self.desk.state(challenge.id, session.caller)
            except PiigateError:
                return None
            if state.grant is not None:
                return state.grant
            if state.state in (ChallengeState.DENIED, ChallengeState.EXPIRED):
                return None
            wait = min(_POLL, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.cancelled.wait(), wait)
        return None

    def _instructions(self, ruling: Ruling, number: int | None) -> tuple[str, str]:
        decision = ruling.decision
        assert decision is not None and decision.challenge is not None
        level = decision.challenge.requirement.level
        ways = []
        if number is not None:
            ways.append(f"approve number {number} on your device")
        if {"totp", "recovery"} & set(decision.challenge.requirement.methods):
            ways.append("run SET piigate.otp = '<code from your authenticator>'")
        ways.append(f"open {self.desk.url(decision.challenge.id)}")
        return f"step-up required: {level} to {ruling.what}", ", or ".join(ways)

    def _notice(self, ruling: Ruling, number: int | None) -> be.NoticeResponse:
        message, detail = self._instructions(ruling, number)
        wait = int(self.approval_wait)
        return be.NoticeResponse(
            (
                ("S", "NOTICE"),
                ("V", "NOTICE"),
                ("C", "00000"),
                ("M", message),
                ("D", detail),
                ("H", f"the statement waits up to {wait}s for the approval"),
            )
        )

    def _refusal(self, ruling: Ruling) -> be.ErrorResponse:
        decision = ruling.decision
        if ruling.outcome is Outcome.STEP_UP and decision is not None and decision.challenge:
            message, detail = self._instructions(ruling, None)
            hint = "approve, then run the statement again within the step-up's lifetime"
            return error(STEP_UP_SQLSTATE, message, D=detail, H=hint)
        reason = decision.reason if decision is not None and decision.reason else None
        text = f"piigate denies this statement: {ruling.what}"
        return error("42501", text + (f" ({reason})" if reason else ""))

    async def _otp(self, session: ClientSession, sql: str) -> None:
        unmask = _UNMASK_SET.fullmatch(sql)
        if unmask is not None:
            session.unmask = unmask.group(1).lower() in ("on", "true")
            done = (be.CommandComplete("SET"),)
            session.expect(Pending(Expect.SYNTHETIC, synthetic=done, ready=True))
            return
        found = _OTP_SET.fullmatch(sql)
        answer: tuple[be.BackendMessage, ...]
        if found is None:
            answer = (error("42601", "give the code as SET piigate.otp = 'code', alone"),)
        elif session.challenge_id is None:
            answer = (error("55000", "no step-up is waiting: run the statement first"),)
        else:
            assert session.caller is not None
            try:
                grant = await self.desk.verify_code(
                    session.challenge_id, found.group(1), session.caller
                )
            except PiigateError as exc:
                answer = (error("28000", f"the code was not accepted ({exc.code})"),)
            else:
                session.grants = [*session.grants[-(_MAX_GRANTS - 1) :], grant]
                session.challenge_id = None
                answer = (be.CommandComplete("SET"),)
        session.expect(Pending(Expect.SYNTHETIC, synthetic=answer, ready=True))
