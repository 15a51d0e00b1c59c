"""Reading and writing shards: listing, tar indexing, byte-range reads, tar writing."""
