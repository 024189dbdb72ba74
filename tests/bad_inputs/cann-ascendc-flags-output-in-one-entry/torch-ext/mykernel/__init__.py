"""Placeholder package of a malformed test project."""
