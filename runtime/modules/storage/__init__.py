"""Storage shared by the modules' adapters (SQLite, Redis)."""
