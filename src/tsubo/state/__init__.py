"""State at the bottom: the SQLite database, its migrations, the clock, and the identity of
what it records (IDs, names, container statuses), used by every layer above it."""
