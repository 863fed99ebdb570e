"""Repository services: the only way packagers, the CLI and HTTP change the repository.

Each module is a set of functions taking a :class:`server.context.Context` first.  They
check authorization (unless the context is a system context), keep ``last_modified``
current, and flush but never commit: the context's ``with`` block is the transaction.
"""
