"""Relay nodes: federation, translation, low-bandwidth and postal rendering."""
