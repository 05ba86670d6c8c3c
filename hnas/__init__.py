"""hnas: Hierarchical Neural Architecture Search with per-device latency lookup tables."""

__version__ = "0.1.0"
