"""Width-parameterized Flax models: a width vector in, a `flax.linen` module out.

`build_model(widths, num_classes, dtype)` is the pure function the rest of
wt_jax calls. It wraps the registered network's module (`custom_archs`: a
built-in family's, `families`, or a user's) at `widths` in `Net`, which
shares the module's parameter tree as is (the paths of the layer graph,
`architectures.layers`).

`Net.__call__(x, train, masks=None)` accepts optional channel masks
{group name: [C] array}: the output of every layer that is a group's tensor
(the trace's `masked` table: each BatchNorm, and each conv or dense layer
that no BatchNorm reads directly) is multiplied by its group's mask (a
BatchNorm of a concatenation: its groups' masks, concatenated), by
intercepting the module's layers (`flax.linen.intercept_methods`). That
makes a masked network compute exactly what the narrower network with
those channels removed computes, where an activation maps 0 to 0 (ReLU,
ReLU6, ...) and every group's tensor ends in such a layer before it is read
(used by AutoSlim and DMCP).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from wt_jax.nets.widths import Widths

Masks = Optional[Mapping[str, Any]]


def mask(x, group, masks: Masks):
  """`x` times its group's mask; a concatenation's (`group` a tuple) is its
  groups' masks concatenated."""
  if masks is None or group is None:
    return x
  parts = group if isinstance(group, tuple) else (group,)
  if not all(g in masks for g in parts):
    return x
  return x * jnp.concatenate([jnp.asarray(masks[g], x.dtype) for g in parts])


class Net(nn.Module):
  """A registered network at `widths`, taking AutoSlim's masks (module doc)."""
  widths: Widths
  num_classes: int = 1000
  dtype: Any = jnp.float32
  # ((module path, group), ...): the layers masks apply to (`build_model`).
  masked: tuple = ()

  def setup(self):
    spec = self.widths.spec
    self.net = spec.net.module(self.widths.as_dict(), self.num_classes,
                               spec.depth, self.dtype)
    nn.share_scope(self, self.net)

  def __call__(self, x, train: bool = False, masks: Masks = None):
    if not masks:
      return jnp.asarray(self.net(x, train=train), jnp.float32)
    groups = dict(self.masked)

    def intercept(next_fun, args, kwargs, context):
      y = next_fun(*args, **kwargs)
      if context.method_name == '__call__':
        y = mask(y, groups.get(tuple(context.module.path)), masks)
      return y

    with nn.intercept_methods(intercept):
      return jnp.asarray(self.net(x, train=train), jnp.float32)


# `config.dtype` -> the compute dtype (parameters stay float32).
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(widths: Widths, num_classes: int,
                dtype: Any = jnp.float32) -> nn.Module:
  """The Flax module of `widths.arch` at `widths` (pure; no parameters yet).

  `dtype` is a jnp dtype or a `config.dtype` name ('float32', 'bfloat16').
  """
  dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
  spec = widths.spec
  masked = tuple(spec.net.masked(spec.depth, widths.values).items())
  return Net(widths=widths, num_classes=num_classes, dtype=dtype,
             masked=masked)
