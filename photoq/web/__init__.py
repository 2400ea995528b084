"""The HTTP layer: the only part of photoq that knows HTTP."""
