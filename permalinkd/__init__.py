"""permalinkd package."""
