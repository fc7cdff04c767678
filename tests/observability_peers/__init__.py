"""Child-process programs for the observability tests."""
