"""Benchmarks that print a ratio against a baseline measured in the same run.

Run them with ``make bench`` (``python -m bench``). The machine is shared and noisy, so
every figure is judged as a ratio to a baseline measured moments before or after it on
the same machine; absolute numbers are printed too. A missed target never makes the run
fail: only an error does. See docs/performance.md.
"""
