"""Layer 2, the Hamiltonian's representation: per-pair blocks, their layout in dense H and Bloch sums H(k)
(``blocks``), and the block-sparse H(R)/S(R) store of large structures (``sparse``)."""
