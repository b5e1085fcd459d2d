"""PyPI-style package indexes: the simple API (PEP 503/691), core metadata (PEP 658/643)."""
