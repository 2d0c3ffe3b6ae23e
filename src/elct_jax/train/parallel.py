"""Data parallelism over the local devices with ``jax.sharding``.

A sharded batch is a stack of per-device batches (same padded sizes) along a new leading axis, placed
with ``NamedSharding(mesh, P("data"))``; parameters and optimizer state are replicated. The step
(``make_train_step(..., sharded=True)``) vmaps the loss over that axis and averages, so XLA runs one
slice per device and all-reduces the gradient. On CPU, test with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``. Multi-host: call
``jax.distributed.initialize()`` in every process first; ``jax.devices()`` then spans all hosts and the
same mesh code applies, with each process feeding its local shards
(``jax.make_array_from_process_local_data``).
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from elct_jax.geometry.basis import OrbitalBasis
from elct_jax.data.loader import Batch, Example, collate, common_pad_sizes


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named "data" over ``devices`` (default: all local devices)."""
    return Mesh(np.array(jax.local_devices() if devices is None else list(devices)), ("data",))


def stack_shards(groups: Sequence[Sequence[Example]], basis: OrbitalBasis) -> Batch:
    """One batch per group, padded to common sizes and stacked along a leading shard axis."""
    if len({len(g) for g in groups}) != 1:
        raise ValueError(f"every shard needs the same number of structures, got {[len(g) for g in groups]}")
    sizes = common_pad_sizes(groups, basis)
    batches = [collate(g, basis, sizes=sizes) for g in groups]
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)


def shard_batch(batch: Batch, mesh: Mesh) -> Batch:
    """Place a stacked batch with its leading axis split over the mesh's "data" axis."""
    n = mesh.devices.size
    lead = {np.shape(x)[0] for x in jax.tree.leaves(batch)}
    if lead != {n}:
        raise ValueError(f"a sharded batch needs a leading axis of {n} (one slice per device), got {sorted(lead)}")
    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))


def replicate(tree, mesh: Mesh):
    """Copy a pytree (parameters, optimizer state) to every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
