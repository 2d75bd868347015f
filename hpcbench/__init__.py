"""hpcbench: distributed deep-learning training benchmarks with honest throughput and scaling numbers."""

__version__ = "0.1.0"
