"""Benchmarks: run with `make bench` (pytest --benchmark-enable); skipped otherwise."""
