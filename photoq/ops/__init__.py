"""The operator commands' machinery (`photoq import`, `photoq doctor`, `photoq reprocess`): cli.py parses their
arguments and calls in here; the server itself only uses reprocess's planning, for POST /api/admin/reprocess."""
