"""Benchmarks with their data generators; each writes ``bench/results/<name>.json``."""
