"""cellserver package."""
