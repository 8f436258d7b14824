"""scd: see docs/architecture.md."""
