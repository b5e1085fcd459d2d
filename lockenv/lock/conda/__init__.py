"""Locking conda packages: versions and MatchSpecs, repodata (the channel client) and
the solver."""
