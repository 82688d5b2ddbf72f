"""The demo: a sample customer API with synthetic PII (``customers``)."""
