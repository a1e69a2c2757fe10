"""Triggers of the Flow Service provider (run in the triggerer; never block its event loop)."""
