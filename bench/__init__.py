"""Benchmarks of the app against the local stand-in: ``make bench``."""
