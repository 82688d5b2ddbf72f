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
from piigate.gateway.postgres.replies import BINDING, CLOSING, SYNCING, Expect, Pending
from piigate.gateway.postgres.statements import error

if TYPE_CHECKING:
    from piigate.gateway.postgres.session import ClientSession

__all__ = ["handle", "handle_now"]


async def handle(session: ClientSession, message: fe.FrontendMessage) -> None:
    if handle_now(session, message):
        return
    gate = session.links.gatekeeper
    if isinstance(message, fe.Query):
        await gate.query(session, message)
    elif isinstance(message, fe.Parse):
        await gate.parse(session, message)
    elif isinstance(message, fe.Execute):
        await gate.execute(session, message)
    else:
        raise ProtocolViolation("a message the gateway does not pass on")


def handle_now(session: ClientSession, message: fe.FrontendMessage) -> bool:
    """Handle ``message`` if that needs no waiting (a statement whose reading is cached
    and that asks nothing of the engine, or any message but a statement); False: nothing
    was done, ``handle`` awaits it."""
    if session.skipping and not isinstance(message, fe.Sync):
        return True
    gate = session.links.gatekeeper
    if isinstance(message, fe.Query):
        return gate.query_now(session, message)
    if isinstance(message, fe.Execute):
        return gate.execute_now(session, message)
    if isinstance(message, fe.Parse):
        return gate.parse_now(session, message)
    if isinstance(message, fe.Bind):
        session.portals[message.portal] = (message.statement, message.parameters)
        session.expect(BINDING)
        session.forward(message)
    elif isinstance(message, fe.Describe):
        session.describe(message, hidden=False)
    elif isinstance(message, fe.Sync):
        session.skipping = False
        if not session.replies.copy_in:  # in COPY FROM STDIN the server ignores it
            session.expect(SYNCING)
        session.forward(message)
        if session.path_stale:
            session.reread_search_path()
    elif isinstance(message, fe.Flush | CopyData):
        session.forward(message)
    elif isinstance(message, CopyDone | fe.CopyFail):
        session.replies.copy_in = False
        session.forward(message)
        if session.reread_after_copy == "now":
            session.reread_search_path()
        elif session.reread_after_copy == "sync":
            session.path_stale = True
        session.reread_after_copy = None
    elif isinstance(message, fe.Close):
        session.forget(message.kind, message.name)
        session.expect(CLOSING)
        session.forward(message)
    elif isinstance(message, Unknown) and message.type == b"F":
        refusal = error("0A000", "function calls are not allowed through the gateway")
        session.expect(Pending(Expect.SYNTHETIC, synthetic=(refusal,), ready=True))
    else:
        return False
    return True
