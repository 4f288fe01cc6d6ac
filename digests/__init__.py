"""Digests, initiatives and the fortnightly What's New."""
