"""``tsubo build``: Dockerfiles parsed (``dockerfile.py``), build contexts read and
copied from (``context.py``), images built step by step into the engine's store
(``builder.py``), and the cache of those steps (``cache.py``)."""
