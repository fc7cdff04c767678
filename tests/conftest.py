"""Shared test set-up: a real nats-server per test comes from the ``helpers.nats_fixtures`` plugin.

tests/ is on sys.path (this is the rootdir conftest, imported in pytest's "prepend" mode), so
every test module, at any depth, imports the shared pieces as ``helpers.<module>``.
"""

pytest_plugins = ["helpers.nats_fixtures"]
