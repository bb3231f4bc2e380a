"""Benchmarks of the hot paths (not tests): each prints a ratio against a baseline measured in the same run."""
