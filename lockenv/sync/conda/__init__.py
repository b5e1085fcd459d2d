"""Installing conda packages: archives (.conda and .tar.bz2), linking with prefix
replacement, conda-meta records."""
