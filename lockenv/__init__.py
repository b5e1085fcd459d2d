"""lockenv: reproducible conda + PyPI environments from one lockfile.

The package is laid out by stage, so a module's path says where it stands in the data
flow ``lockenv.toml --lock--> lockenv.lock --sync--> environment``:

- `lockenv.lock` — the lock side: the manifest (and its editor and importers), the index
  and channel clients, the resolvers and the staleness check.  ``lock/pypi`` and
  ``lock/conda`` hold each ecosystem's index client, metadata and resolver provider.
- `lockenv.lockfile` — the contract between the two sides: the lock's data model,
  read, validated and written deterministically.
- `lockenv.sync` — the sync side: plan, fetch (cache or bundle), unpack, link, swap,
  verify.  ``sync/pypi`` installs wheels and ``sync/conda`` links conda packages.  It
  needs only the lock: it never imports the lock side, the index clients or tomlkit.
- `lockenv.build` — the build stage, above both sides: sdists and source trees turned
  into metadata (for the lock) and wheels (for the sync) in isolated build environments
  that the lock side resolves and the sync side installs.  Each side declares the
  protocol it needs (``MetadataBuilder``, ``WheelBuilder``); the workspace hands over a
  `lockenv.build.builder.SourceBuilder`, so neither side imports this stage.
- `lockenv.reports` — what is made from a lock: tree, diff, export, bundle.
- `lockenv.workspace` ties the stages together for a project on disk, and `lockenv.cli`
  parses arguments and prints through `lockenv.console` (streams, colour, -q/-v,
  progress); nothing imports the CLI.
- Beneath them all, shared by both sides: `git` (refs resolved to commits, checkouts in
  the cache), and under it `errors`, `atomic` (crash-safe file writes), `urls`
  (credentials found in and taken out of URLs), `platforms`, `project` (where a
  project's files are), `cache`, `http` (over `transport`: the downloads' connections
  on the standard library's http.client), `mirrors`, `pipconfig`,
  `progress` (what long work reports: messages, and tasks counted in items and bytes).

Imports only go down this list (and `lock` and `sync` never into each other); the
contracts in ``pyproject.toml`` ([tool.importlinter]) are checked by the test suite.
"""

__version__ = "0.1.0"
