"""Devices and shardings: one 1-D mesh with a 'data' axis, multi-host.

* `maybe_initialize_distributed(config)`: `jax.distributed.initialize()` when
  `config.distributed` or WT_JAX_DISTRIBUTED=1 (call before touching devices);
* `make_mesh()`: all devices of all processes on the 'data' axis;
* `replicated(mesh)` / `batch_sharding(mesh)`: the two shardings wt_jax uses,
  state replicated (`P()`) and batches split over 'data' (`P('data')`);
  `seeds_batch_sharding(mesh)`: the batches of seeds trained in one program
  (`P(None, 'data')`: `[seed, example, ...]`, examples split);
  `stacked_batch_sharding(mesh, n)`: batches with n such leading axes (the
  steps of one call: `[step, example, ...]`, `[seed, step, example, ...]`);
* `global_batch(mesh, local)`: this process's numpy batch -> global arrays;
* `replicate(mesh, tree)`: host values -> replicated arrays (multi-process);
* `to_host(tree)`: replicated arrays -> numpy, on every process.

On CPU, cross-process collectives use gloo
(`jax_cpu_collectives_implementation='gloo'`, the default of this jax).
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np


def maybe_initialize_distributed(config=None) -> bool:
  """`jax.distributed.initialize()` if `config.distributed` or
  WT_JAX_DISTRIBUTED=1; True when distributed. Call before touching devices.

  Arguments come from the environment (JAX_COORDINATOR_ADDRESS, ...) or the
  cluster's auto-detection (Slurm, Open MPI, TPU, ...).
  """
  wanted = bool(config is not None and config.get('distributed', False))
  wanted |= os.environ.get('WT_JAX_DISTRIBUTED', '') == '1'
  if wanted and not jax.distributed.is_initialized():
    jax.distributed.initialize()
  return wanted


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def seeds_batch_sharding(mesh: Mesh) -> NamedSharding:
  """Batches of several seeds, `[seed, example, ...]`: examples split."""
  return stacked_batch_sharding(mesh, 1)


def stacked_batch_sharding(mesh: Mesh, leading: int) -> NamedSharding:
  """Batches stacked on `leading` axes (seeds, steps of one call) before
  the example axis, which is split over 'data'."""
  return NamedSharding(mesh, P(*([None] * leading), 'data'))


def global_batch(mesh: Mesh, local_batch: Mapping[str, np.ndarray],
                 sharding: Optional[NamedSharding] = None):
  """This process's numpy batch -> global jax.Arrays sharded over 'data'
  (`sharding`: default `batch_sharding(mesh)`)."""
  sharding = batch_sharding(mesh) if sharding is None else sharding
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      dict(local_batch))


def to_host(tree):
  """Replicated (or fully addressable) jax.Arrays -> numpy, on every host."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(get, tree)


def replicate(mesh: Mesh, tree):
  """Host values -> jax.Arrays replicated over `mesh` (multi-process safe)."""
  sharding = replicated(mesh)

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)
