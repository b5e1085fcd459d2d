"""The build stage: source distributions and source trees turned into metadata (for the
lock) and wheels (for the sync), in isolated build environments that lockenv makes with
both of its sides.

It sits above `lockenv.lock` and `lockenv.sync` and uses both (the lock side resolves
build requirements, the sync side installs them); neither side imports it.
`lockenv.workspace` hands a `lockenv.build.builder.SourceBuilder` to each, through the
protocol that side declares.  Building runs package code: it happens here only.
"""
