"""Layer 1, geometry: atomic structures (``structure``), neighbour graphs with periodic images (``graph``) and
the orbital basis of each element with its PySCF/e3nn orderings (``basis``)."""
