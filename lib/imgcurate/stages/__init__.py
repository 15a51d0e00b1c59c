"""Driver-side stages: each lists its work, runs it as Spark tasks and commits tables."""
