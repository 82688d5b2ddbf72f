"""TOTP (RFC 6238): codes and enrolment URIs (``protocol``, pure) and the check a challenge
runs (``ceremony``).
"""
