"""Benchmarks of bountyescrow (not part of the installed package).

Run ``make bench`` or ``python benchmarks/lifecycle.py --help``; docs/performance.md explains
what is measured and shows the numbers.
"""
