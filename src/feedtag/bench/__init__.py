"""Benchmarks and sample footage: real video, live-paced, through the real code paths."""
