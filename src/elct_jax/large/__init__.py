"""Large structures: chunked O(N) prediction into a sparse H(R) store, sparse H(k), S(k)."""
from elct_jax.large.chunked import predict_sparse, receptive_hops
from elct_jax.large.sparse import BlochMatrix, SparseBlocks, overlap_like

__all__ = ["BlochMatrix", "SparseBlocks", "overlap_like", "predict_sparse", "receptive_hops"]
