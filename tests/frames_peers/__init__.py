"""Helpers and child-process programs of the frame, pipeline and bridge tests."""
