"""The HTTP gateway's pure core, shared by the reverse proxy, forward-auth and the middleware.

``config`` reads ``gateway.http`` (positioned errors, checked against the policy), ``routes``
matches a request to a route and builds the engine's request from it, ``selectors`` is the
JSONPath subset that names fields, ``masking`` hides them, ``ratelimit`` counts requests against
``rate_limit`` through the counters port it is given. None of them does I/O of its own.
"""
