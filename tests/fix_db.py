"""Database fixtures (filled in by the core)."""
