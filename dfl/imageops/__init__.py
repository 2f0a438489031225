"""Layer 1: pure image functions on numpy arrays (colour transfer, warps, filters, synthetic-media labels)."""
