"""Layer 6, inference: Hamiltonians of new structures from a trained model (``predict``), and chunked O(N)
prediction of large structures in bounded memory (``chunked``)."""
