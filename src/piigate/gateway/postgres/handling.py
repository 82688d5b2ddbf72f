"""What a session does with each message of its client: at once, or awaiting a statement.

``handle_now`` handles what needs no waiting: every message but a statement, and a statement
(a simple query, a Parse, an Execute) whose reading the session has at hand (the reader's
caches, or the prepared statement's reading) and that asks nothing of the engine (no
catalogued class, nothing refused). ``handle`` awaits the rest: the reading, the ruling, a
step-up. The session's callback for the client's bytes handles with ``handle_now`` while it
can, its task with ``handle`` (``session``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from piigate.gateway.postgres import frontend as fe
from piigate.gateway.postgres.messages import CopyData, CopyDone, Unknown
from piigate.gateway.postgres.protocol import ProtocolViolation
from piigate.gateway.postgres.replies import Expect, Pending
from piigate.gateway.postgres.statements import error

if TYPE_CHECKING:
    from piigate.gateway.postgres.session import ClientSession

__all__ = ["handle", "handle_now"]


async def handle(self: ClientSession, message: fe.FrontendMessage) -> None:
    if handle_now(self, message):
        return
    gate = self.links.gatekeeper
    if isinstance(message, fe.Query):
        await gate.query(self, message)
    elif isinstance(message, fe.Parse):
        await gate.parse(self, message)
    elif isinstance(message, fe.Execute):
        await gate.execute(self, message)
    else:
        raise ProtocolViolation("a message the gateway does not pass on")


def handle_now(self: ClientSession, message: fe.FrontendMessage) -> bool:
    """Handle ``message`` if that needs no waiting (a statement whose reading is cached
    and that asks nothing of the engine, or any message but a statement); False: nothing
    was done, ``handle`` awaits it."""
    if self.skipping and not isinstance(message, fe.Sync):
        return True
    gate = self.links.gatekeeper
    if isinstance(message, fe.Query):
        return gate.query_now(self, message)
    if isinstance(message, fe.Execute):
        return gate.execute_now(self, message)
    if isinstance(message, fe.Parse):
        return gate.parse_now(self, message)
    if isinstance(message, fe.Bind):
        self.portals[message.portal] = (message.statement, message.parameters)
        self.expect(Pending(Expect.BIND))
        self.forward(message)
    elif isinstance(message, fe.Describe):
        self.describe(message, hidden=False)
    elif isinstance(message, fe.Sync):
        self.skipping = False
        if not self.replies.copy_in:  # in COPY FROM STDIN the server ignores it
            self.expect(Pending(Expect.SYNC))
        self.forward(message)
        if self.path_stale:
            self.reread_search_path()
    elif isinstance(message, fe.Flush | CopyData):
        self.forward(message)
    elif isinstance(message, CopyDone | fe.CopyFail):
        self.replies.copy_in = False
        self.forward(message)
        if self.reread_after_copy == "now":
            self.reread_search_path()
        elif self.reread_after_copy == "sync":
            self.path_stale = True
        self.reread_after_copy = None
    elif isinstance(message, fe.Close):
        self.forget(message.kind, message.name)
        self.expect(Pending(Expect.CLOSE))
        self.forward(message)
    elif isinstance(message, Unknown) and message.type == b"F":
        refusal = error("0A000", "function calls are not allowed through the gateway")
        self.expect(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True))
    else:
        return False
    return True
