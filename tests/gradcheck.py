"""Gradient check shared by the training tests: jax.grad against central finite differences."""
import jax
import numpy as np


def assert_grad_matches_fd(loss, params, grads, n_entries=4, seed=1, step=1e-5, rtol=1e-6) -> None:
    """Compare ``grads`` (a pytree like ``params``) with central differences of the scalar ``loss(params)``
    on ``n_entries`` random entries of distinct parameter leaves: |g - fd| <= rtol * max(1, |fd|)."""
    leaves, treedef = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(grads)
    rng = np.random.default_rng(seed)
    for k in rng.choice(len(leaves), size=n_entries, replace=False):
        idx = tuple(rng.integers(0, n) for n in leaves[k].shape)

        def shifted(delta):
            moved = list(leaves)
            moved[k] = leaves[k].at[idx].add(delta)
            return float(loss(jax.tree.unflatten(treedef, moved)))

        fd = (shifted(step) - shifted(-step)) / (2 * step)
        assert abs(float(g_leaves[k][idx]) - fd) <= rtol * max(1.0, abs(fd)), (k, idx, g_leaves[k][idx], fd)
