"""Helpers of ``scripts/benchmark.py``: one module per benchmark case, plus shared timing."""
