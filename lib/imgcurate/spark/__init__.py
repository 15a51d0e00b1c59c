"""Spark plumbing: sessions, tables, per-shard tasks. The work itself lives elsewhere."""
