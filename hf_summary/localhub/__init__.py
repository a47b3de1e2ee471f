"""A Hub-compatible HTTP server on loopback, for tests, benchmarks and the offline demo."""
