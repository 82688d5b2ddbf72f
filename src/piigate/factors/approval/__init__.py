"""Approval by another person (method ``approval``): who may approve and how (``ceremony``)."""
