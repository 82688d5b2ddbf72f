"""A client's ``CancelRequest``: the statement its session runs, stopped.

A client cancels on a new connection, quoting the key the gateway gave its session. The
session's wait for a step-up ends at once; a statement it has sent is cancelled on the server
with the server's own key for the gateway's connection (the client never learns that key). A
key no session of this process holds may be another worker's: it is handed to that worker
(``peers.py``), once. A key nobody issued cancels nothing, and nothing is answered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from piigate.gateway.postgres import frontend as fe

if TYPE_CHECKING:
    from piigate.gateway.postgres.session import SessionLinks

__all__ = ["cancel"]


async def cancel(links: SessionLinks, message: fe.CancelRequest, *, handed: bool = False) -> None:
    """Cancel what the session of ``message``'s key runs; ``handed``: it came from another
    worker, which found it was this one's."""
    session = links.sessions.get((message.process_id, message.secret_key))
    if session is None:
        peers = links.peers
        if peers is not None and not handed and peers.owner(message.process_id) != peers.index:
            await peers.forward(message)
        return
    session.cancelled.set()
    upstream = session.upstream
    if upstream is None or upstream.key is None or not session.replies.upstream_busy:
        # Nothing of the session's runs on the server (a wait for approval holds the
        # statement back): a cancel sent there would hit the client's next statement.
        return
    dsn = links.config.upstream
    try:
        _, writer = await asyncio.open_connection(dsn.host, dsn.port)
    except OSError:
        return
    key = upstream.key
    writer.write(fe.CancelRequest(key.process_id, key.secret_key).encode())
    await writer.drain()
    writer.close()
