"""Image inspection, decoding and preprocessing."""
