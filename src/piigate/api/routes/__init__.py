"""HTTP routes, one module per concept of CONTRACT §4."""
