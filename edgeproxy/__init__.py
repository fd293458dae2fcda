"""edgeproxy package."""
