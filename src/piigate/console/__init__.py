"""The web console (README "The console"): server-rendered pages for people — sign-in, the
step-up page, their own factors — and for the security team, served by ``piigate serve``.

Pages are Jinja2 templates with autoescaping; the little script they need is static files of
this package (no build step, nothing loaded from another origin), under a strict
Content-Security-Policy. Every state-changing form carries a CSRF token (``csrf.py``); every
page answers with the security headers of ``web.py``. Pages call the same services as the API
routes, so the console never decides anything the API would not.
"""
