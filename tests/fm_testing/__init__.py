"""Shared test utilities (importable from any test as ``fm_testing``)."""
