"""Programs that tests run in separate OS processes, talking to them over a real nats-server."""
