"""Shared test support: child processes we own, free ports, bounded waits."""
