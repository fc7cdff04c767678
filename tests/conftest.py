"""Shared test set-up: a real nats-server per test comes from the ``nats_fixtures`` plugin."""

pytest_plugins = ["nats_fixtures"]
