"""The PostgreSQL gateway (being built: the wire protocol and SCRAM first).

``messages`` and ``protocol`` are the frontend/backend protocol 3.0 without sockets: frozen
message dataclasses that encode byte for byte, and incremental parsers fed with bytes (as h11
does for HTTP). ``scram`` is the server side of SCRAM-SHA-256. All of it is pure.
"""
