"""Benchmarks for gpuimages: read throughput against Spark's image source, hand-written recipes and ceilings.

Run ``python -m benchmarks.read`` from the repository root (``--help`` for options).
"""
