"""Harnesses that run independent implementations (MIT krb5, ...) for interop tests and vectors."""
