"""Recovery codes: making, hashing and matching them (``protocol``, pure) and the check a
challenge runs (``ceremony``).
"""
