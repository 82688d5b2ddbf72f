"""One client connection through the PostgreSQL gateway.

Start-up (``greeting``): encryption, a piigate credential as the password (a database
credential, an API key or an IdP JWT), the gateway's own upstream connection, and a backend key
of its own (a cancel of it reaches the right server backend, and stops a wait for approval).

Then every statement is read (``reading``), ruled on (``judge``) and, if it may run, forwarded
with a plan for its rows (``replies``: masking, scrubbing). A step-up sends a NOTICE at once
with the ways to approve (``statements``) and holds the statement up to ``approval_wait``; after
it the statement runs, or fails with SQLSTATE ``28SU1``. A refusal answers that one statement;
the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog

from piigate.callers import Caller
from piigate.gateway.postgres import backend as be
from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.catalog import Catalog
from piigate.gateway.postgres.config import PostgresGatewayConfig
from piigate.gateway.postgres.cursors import Cursors
from piigate.gateway.postgres.greeting import start_session
from piigate.gateway.postgres.handling import handle, handle_now
from piigate.gateway.postgres.judge import Touches, every_class, statement_digest
from piigate.gateway.postgres.links import Link
from piigate.gateway.postgres.messages import CopyData, CopyDone
from piigate.gateway.postgres.peers import CancelPeers
from piigate.gateway.postgres.protocol import FrontendParser, ProtocolViolation
from piigate.gateway.postgres.reading import Reader
from piigate.gateway.postgres.replies import Desync, Expect, Pending, Replies, Result
from piigate.gateway.postgres.statements import Gatekeeper, error, result_plan
from piigate.gateway.postgres.upstream import Upstream
from piigate.model import Context

__all__ = ["ClientSession", "SessionLinks"]

log = structlog.get_logger("piigate.gateway.postgres")

# A search path no schema can be on: unqualified names then resolve to nothing in the plan, and
# the statement is taken as touching everything.
_UNKNOWN_PATH: Final = '"piigate: unknown search path"'
# What the server runs in place of a refused simple query: it fails (no such function), and
# nothing else happens.
_REFUSED: Final = 'SELECT pg_catalog."piigate: refused"()'


@dataclass
class SessionLinks:
    """What sessions share: the configuration, who may call, the reader, the cancel keys."""

    config: PostgresGatewayConfig
    catalog: Catalog  # the configuration's, with the materialized views derived from it
    authenticate: Callable[[str], Awaitable[Caller]]
    reader: Reader
    gatekeeper: Gatekeeper
    tls: ssl.SSLContext | None
    oid_columns: dict[tuple[int, int], str] = field(default_factory=dict)
    oid_tables: set[int] = field(default_factory=set)
    sessions: dict[tuple[int, bytes], ClientSession] = field(default_factory=dict)
    # A database credential by its id: its SCRAM verifier and who it is (``Desk.scram``).
    database_credentials: Callable[[str], Awaitable[tuple[str, Caller] | None]] | None = None
    # With several workers: the keys they issue and their hand-over of cancels (``peers.py``).
    peers: CancelPeers | None = None


class ClientSession:
    def __init__(self, links: SessionLinks, client: Link) -> None:
        self.links = links
        self.client = client
        self.parser = FrontendParser()
        self.replies = Replies()
        self.inbox: deque[tuple[fe.FrontendMessage, bytes]] = deque()  # with their bytes
        self.received: tuple[fe.FrontendMessage, bytes] | None = None  # the one at hand
        self.outbox: list[bytes] = []  # forwarded, not yet written upstream (see ``flush``)
        self.upstream: Upstream | None = None
        self.caller: Caller | None = None
        self.context = Context()
        self.search_path: str | None = None
        # Prepared statements: their text, what they touch, the search path they were read with.
        self.statements: dict[str, tuple[str, list[Touches], str | None]] = {}
        self.portals: dict[str, tuple[str, tuple[bytes | None, ...]]] = {}
        self.described: dict[tuple[str, str], be.RowDescription | None] = {}
        self.skipping = False  # after a refused Execute: drop messages until Sync
        self.grants: list[str] = []  # step-up grants obtained in this session, newest last
        self.challenge_id: str | None = None  # the step-up SET piigate.otp answers
        self.cursors = Cursors()  # what the cursors it saw declared read
        self.unmask = False  # SET piigate.unmask = on: a masked result asks for the step-up
        self.told_masked = False
        self.key: tuple[int, bytes] | None = None
        self.relay_failed = False  # the server's replies broke the protocol or the queue
        self.cancelled = asyncio.Event()
        self.path_known = asyncio.Event()  # clear while the search path is being read again
        self.path_known.set()
        self.path_stale = False  # an Execute may have changed it: read again after the Sync
        # A COPY FROM STDIN that may change the search path: read it again once the copy ends
        # ("now": a simple query's; "sync": an Execute's, after the next Sync).
        self.reread_after_copy: Literal["now", "sync"] | None = None
        self.at_once = False  # handling messages in the event loop's callback (``_arrived``)
        self.fault: BaseException | None = None  # raised there: the task raises it again
        peer = client.get_extra_info("peername")
        self.client_ip: str | None = peer[0] if isinstance(peer, tuple) else None

    # -- plumbing -----------------------------------------------------------------------------
    def send(self, *messages: object) -> None:
        for message in messages:
            self.client.write(message.encode())  # type: ignore[attr-defined]

    async def next_message(self) -> fe.FrontendMessage | None:
        while not self.inbox:
            data = await self.client.read()
            if not data:
                return None
            self.inbox.extend(self.parser.feed_framed(data))
        self.received = self.inbox.popleft()
        return self.received[0]

    def forward(self, message: fe.FrontendMessage | CopyData | CopyDone) -> None:
        """Queue ``message`` for the server: the bytes it came in when it is the client's
        message at hand, else its encoding (a message of the gateway's own). ``flush`` writes
        what is queued in one go (a pipelined Parse/Bind/Describe/Execute/Sync is then one
        write, not five)."""
        received = self.received
        raw = received[1] if received is not None and received[0] is message else None
        if not self.outbox and not self.at_once:
            # Written at the latest when the session next waits for anything (a reading, a
            # ruling, a step-up), so nothing forwarded is ever held back by a wait.
            asyncio.get_running_loop().call_soon(self.flush)
        self.outbox.append(message.encode() if raw is None else raw)

    def flush(self) -> None:
        """Write the queued messages upstream (see ``forward``; and once the client's
        messages received so far are handled, before the next read from the client)."""
        if self.outbox:
            assert self.upstream is not None
            self.upstream.link.write(b"".join(self.outbox))
            self.outbox.clear()

    # -- the connection -----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if not await start_session(self):
                return
            await self._serve()
        except ProtocolViolation as exc:
            log.info("pg_protocol_violation", problem=str(exc))
            with contextlib.suppress(Exception):
                self.send(error("08P01", "protocol violation", severity="FATAL"))
        except ConnectionError:
            pass
        except Exception as exc:  # fail closed: the connection ends, nothing more flows
            log.error("pg_session_failed", error=type(exc).__name__)
            with contextlib.suppress(Exception):
                self.send(error("XX000", "the gateway failed; the connection is closed", "FATAL"))
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.key is not None:
            self.links.sessions.pop(self.key, None)
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                self.flush()  # what was forwarded before the end still reaches the server
            self.upstream.link.close()
        with contextlib.suppress(Exception):
            await self.client.drain()
        self.client.close()

    async def _serve(self) -> None:
        assert self.upstream is not None
        server = self.upstream.link
        if pending := self.upstream.parser.pending():  # what came after the start-up first
            self._relay(pending)
        server.receive_with(self._relay, self.client.close)
        self.client.first_look(self._arrived)
        while not server.lost and not self.relay_failed:
            if not self.inbox:  # all the client sent so far is handled: out it goes
                self.flush()
                if server.writing_paused:
                    await server.drain()
                if self.client.writing_paused:
                    await self.client.drain()
                if not await self._receive():
                    return
                continue
            self.received = self.inbox.popleft()
            message = self.received[0]
            if isinstance(message, fe.Terminate):
                self.forward(message)
                self.flush()
                return
            await handle(self, message)

    async def _receive(self) -> bool:
        """Read what the client sent into the inbox; False at its end, with nothing left."""
        data = await self.client.read()
        if self.fault is not None:
            raise self.fault
        if data:
            self.inbox.extend(self.parser.feed_framed(data))
        return bool(self.inbox) or not self.client.at_eof()

    def _arrived(self, data: bytes) -> bool:
        """What the client sent, while the task waits for it: the messages that need no
        waiting (``_handle_now``) are handled here, in the event loop's callback, and what
        they forward is written at once; at the first that needs waiting, it and the rest
        are left to the task. False: not taken (the task reads ``data``)."""
        assert self.upstream is not None
        server = self.upstream.link
        if self.inbox or self.relay_failed or server.lost or self.fault is not None:
            return False
        if server.writing_paused or self.client.writing_paused:
            return False  # the task waits for them to drain first
        self.at_once = True
        try:
            self.inbox.extend(self.parser.feed_framed(data))
            while self.inbox:
                self.received = self.inbox[0]
                if not handle_now(self, self.received[0]):
                    break
                self.inbox.popleft()
            if not self.inbox:
                self.flush()
        except Exception as exc:  # the task raises it, as if its own
            self.fault = exc
        finally:
            self.at_once = False
        if self.inbox or self.fault is not None or server.writing_paused:
            self.client.nudge()
        return True

    def _relay(self, data: bytes) -> None:
        """The server's ``data``, through the reply queue, to the client, as it arrives. A
        client that does not keep up stops the reading from the server until it does."""
        if self.relay_failed or self.client.lost:  # the session is ending
            return
        try:
            out = self.replies.relay(data)
        except Exception as exc:  # fail closed: nothing more flows, the session ends
            self.relay_failed = True
            if isinstance(exc, Desync | ProtocolViolation):
                log.error("pg_upstream_out_of_step", problem=str(exc))
                fatal = error("08P01", "the gateway lost track of the server's replies", "FATAL")
            else:
                log.error("pg_session_failed", error=type(exc).__name__)
                fatal = error("XX000", "the gateway failed; the connection is closed", "FATAL")
            with contextlib.suppress(Exception):
                self.send(fatal)
            self.client.close()
            return
        if out:
            self.client.write(out)
        if self.client.writing_paused:
            assert self.upstream is not None
            server = self.upstream.link
            server.pause_reading()
            self.client.when_drained(server.resume_reading)

    # -- messages -----------------------------------------------------------------------------
    def refuse(self, refusal: be.ErrorResponse, *, extended: bool) -> None:
        """Refuse the statement at hand with ``refusal``. The server is made to fail in its
        place (an Execute of a portal that cannot exist, or a call of a function that does
        not), so it ends the transaction as for any error: an implicit one rolled back, an
        explicit one aborted; in the extended protocol it then skips to the Sync, and so does
        the gateway. The client sees ``refusal``, never the server's error."""
        if extended:
            self.expect(Pending(Expect.EXECUTE, results=[Result(scrub=True)], refusal=refusal))
            self.forward(fe.Execute(f"piigate refused {secrets.token_hex(12)}", 1))
            self.skipping = True
        else:
            overflow = Result(scrub=True)
            self.expect(Pending(Expect.QUERY, overflow=overflow, refusal=refusal))
            self.forward(fe.Query(_REFUSED))

    def expect(self, pending: Pending) -> None:
        """Queue ``pending``; what the gateway answers itself goes out once it is its turn."""
        if answered := self.replies.push(pending):
            self.client.write(b"".join(answered))

    def describe(self, message: fe.Describe, *, hidden: bool) -> None:
        key = (message.kind, message.name)

        def described(description: be.RowDescription | None) -> None:
            self.described[key] = description

        self.expect(Pending(Expect.DESCRIBE, hidden=hidden, on_description=described))
        self.forward(message)

    def forget(self, kind: str, name: str) -> None:
        if kind == "S":
            self.statements.pop(name, None)
        else:
            self.portals.pop(name, None)
        self.described.pop((kind, name), None)

    def reset_unnamed(self) -> None:
        """A simple query drops the unnamed statement and portal."""
        self.forget("S", "")
        self.forget("P", "")

    async def touches_of_portal(
        self, portal: str
    ) -> tuple[str, list[Touches], tuple[bytes | None, ...]]:
        """What an Execute of ``portal`` touches. The server reads a prepared statement again
        with the search path in force, and so does the gateway."""
        bound = self.portals.get(portal)
        if bound is None or bound[0] not in self.statements:
            why = "a portal the gateway did not see bound"
            return "", [every_class("other", self.links.catalog, why)], ()
        sql, touches, path = self.statements[bound[0]]
        if self.path_stale:
            touches = [every_class("other", self.links.catalog, "the search path changed")]
        elif path != self.search_path:
            touches = await self.read(sql)
        return sql, touches, bound[1]

    def portal_reading(self, portal: str) -> list[Touches] | None:
        """What ``touches_of_portal`` answers when that needs no reading: the statement was
        read with the search path in force (None otherwise)."""
        bound = self.portals.get(portal)
        if bound is None or self.path_stale:
            return None
        found = self.statements.get(bound[0])
        if found is None or found[2] != self.search_path:
            return None
        return found[1]

    def cached_reading(self, sql: str) -> list[Touches] | None:
        """What ``read`` answers without waiting, from the reader's caches (None: not)."""
        if not self.path_known.is_set():
            return None
        return self.links.reader.cached(sql, self.search_path)

    def description_for(self, portal: str) -> be.RowDescription | None:
        found = self.described.get(("P", portal))
        if found is None:
            bound = self.portals.get(portal)
            if bound is not None:
                found = self.described.get(("S", bound[0]))
        return found

    def run_execute(self, message: fe.Execute, result: Result) -> None:
        """Forward ``message`` with its rows' plan; describe the portal first when the
        gateway has not seen what its rows hold and something may need masking."""
        if result.masker is not None:
            description = self.description_for(message.portal)
            if description is None:

                def described(found: be.RowDescription | None) -> None:
                    if found is not None and result.masker is not None:
                        result.mask = result.masker(found)

                pending = Pending(Expect.DESCRIBE, hidden=True, on_description=described)
                self.expect(pending)
                self.forward(fe.Describe("P", message.portal))
            else:
                result.mask = result.masker(description)
        self.expect(Pending(Expect.EXECUTE, results=[result]))
        self.forward(message)

    def reread_search_path(self) -> None:
        """Ask the server for the search path after a statement that may have changed it (a
        SET, a RESET, DISCARD, a function): statements after it are read once it is known."""
        self.path_known.clear()

        def found(row: be.DataRow | None) -> None:
            if row is not None and row.values and row.values[0] is not None:
                self.search_path = row.values[0].decode()
            else:  # unknown: unqualified names can no longer be read with certainty
                self.search_path = _UNKNOWN_PATH
            self.path_known.set()

        self.path_stale = False  # an Execute may have changed it: read again after the Sync

        self.expect(Pending(Expect.QUERY, hidden=True, on_row=found))
        self.forward(fe.Query("SHOW search_path"))

    async def read(self, sql: str) -> list[Touches]:
        if not self.path_known.is_set():
            await self.path_known.wait()
        return await self.links.reader.read(sql, self.search_path)

    def binding(self, sql: str, parameters: tuple[bytes | None, ...] = ()) -> dict[str, str]:
        return {"protocol": "postgres", "statement": statement_digest(sql, parameters)}

    def plan_for(self, touches: Touches, masked: frozenset[str]) -> Result:
        return result_plan(self.links, touches, masked)
