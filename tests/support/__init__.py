"""Shared helpers for tests and benchmarks: the Torrust schema, a live writer, servers."""
