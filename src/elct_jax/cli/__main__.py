"""``python -m elct_jax.cli``: the ``elct`` command."""
from elct_jax.cli.main import main

raise SystemExit(main())
