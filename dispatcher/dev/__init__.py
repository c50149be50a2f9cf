"""Developer tooling: the local service launcher (Redis, sandbox, workers, Flower) and the demo."""
