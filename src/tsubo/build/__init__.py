"""``tsubo build``: Dockerfiles parsed (``dockerfile.py``), build contexts read
(``context.py``) and built, step by step, into images of the engine's store
(``builder.py``), with a cache of the steps."""
