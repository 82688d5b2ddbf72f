"""Gateways: piigate on the path where PII leaves (``http``: in front of an HTTP API)."""
