"""Locking PyPI packages: the index client (PEP 691/503/658), wheel and sdist metadata,
and the resolvelib provider."""
