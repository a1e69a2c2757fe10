"""Operators of the Flow Service provider."""
