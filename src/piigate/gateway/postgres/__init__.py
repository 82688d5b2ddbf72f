"""The PostgreSQL gateway (being built: the wire protocol and SCRAM first).

Protocol 3.0 without sockets: the messages as frozen dataclasses that encode byte for byte
(``frontend``, ``backend``, ``auth``, ``messages``, over ``wire``'s primitives) and incremental
parsers fed with bytes as they arrive (``protocol``, as h11 does for HTTP). ``scram`` is the
server side of SCRAM-SHA-256. All of it is pure.
"""
