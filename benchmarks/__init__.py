"""Performance measurements of the harness (scripts/benchmark.py, scripts/compare_searchers.py).

Not part of the installed packages: nothing in search/, trainable/ or spaces/ imports it, and
a cluster's nodes are not shipped it. Its figures and what they mean are in BENCHMARKS.md.
"""
