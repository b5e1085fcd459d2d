"""Installing wheels: unpacking into the cache, RECORD, entry points, the install
itself."""
