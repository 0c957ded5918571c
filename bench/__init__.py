"""Benchmarks of IRE, run by hand and never as timed assertions inside the tests.

``python -m bench.serve`` measures ``ire serve`` against a minimal in-process gRPC floor.
"""
