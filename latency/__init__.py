"""Latency toolkit: export ops to TFLite, measure them on devices, keep per-device lookup tables."""
