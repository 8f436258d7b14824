"""kdcd: see docs/architecture.md."""
