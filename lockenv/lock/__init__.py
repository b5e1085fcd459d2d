"""The lock side: manifest -> index and channel clients -> resolvers -> a lock.

Nothing here installs anything; `lockenv.sync` never imports this package.
"""
