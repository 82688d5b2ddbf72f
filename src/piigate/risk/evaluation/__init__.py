"""``piigate risk eval``: replay a login history through the risk engine and measure it."""
