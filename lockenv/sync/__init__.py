"""The sync side: a lock -> plan -> fetch -> unpack -> link -> swap -> verify.

Built from the lock alone: nothing here imports the lock side (`lockenv.lock`), the index
clients or tomlkit, so a cluster node can materialize a lock fast and with little code.
"""
