"""The container engine: containers, names, lifecycle, monitor, logs, state store (SQLite).

Above the OCI runtime: ``options`` parses Docker's ``run`` flags, ``ocispec`` turns them and
the image's config into the ``config.json`` handed to ``tsubo-runtime``. Each module's
docstring says what it owns. Nothing is imported here: ``tsubo run`` is a hot path.
"""
