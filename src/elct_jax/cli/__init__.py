"""Layer 8, the ``elct`` command (``main``) with its band-structure runner (``bands``) and the demo (``demo``)."""
