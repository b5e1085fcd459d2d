"""Conda packages: versions, MatchSpecs, channels, the resolver provider and archives."""
