"""The PostgreSQL gateway (``piigate gateway postgres``): step-up and masking on the wire.

The protocol without sockets (``wire``, ``messages``, ``frontend``, ``backend``, ``auth``,
``protocol``, as h11 does for HTTP) and ``scram``; what statements touch (``analysis`` and its
modules over sqlglot, ``plan`` over the server's ``EXPLAIN``, ``judge``); the rows and messages
the client gets (``replies``, ``rows``, ``scrub``): all pure. The asyncio layer on top:
``session``, ``statements``, ``reading``, ``links`` (the connections, as asyncio protocols),
``upstream``, ``desk``, ``server``.
"""
