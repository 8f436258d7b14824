"""ctad: see docs/architecture.md."""
