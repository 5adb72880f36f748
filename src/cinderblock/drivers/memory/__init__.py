"""The memory driver: volumes held in process memory, for tests and benchmarks."""
