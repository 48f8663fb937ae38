r"""Registering a network: the trace of ResNet-50, against jax's own work.

  python bench/trace_time.py            # full (~2 min on 2 cores)
  python bench/trace_time.py --quick    # 1 round

`wt_jax.register_arch` traces a network once (`tracing.trace`: an abstract
`init_with_output` under `jax.make_jaxpr`, with every Flax module call
intercepted, then the checks of `trace_checks` and the layer list). Here
the network is the built-in ResNet-50 module (`models.build_model`),
registered as a user's network would be ('resnet50_traced', base widths =
ResNet-50's at width 1.0, traced at 224x224). Three contenders run
interleaved in this process (`harness.interleave`, one untimed priming turn
each):

* `register`: `wt_jax.register_arch(...)`, a fresh registration each turn
  (so a fresh trace);
* `eval_shape`: `jax.eval_shape(model.init, ...)`, the abstract init alone
  (the floor under any trace of a Flax module);
* `compile`: `jax.jit(model.apply).lower(...).compile()` of the forward pass
  at batch 2, a fresh function each turn (what the first training step of
  that network pays anyway).

Reported: seconds per turn and the ratios register / eval_shape and
register / compile; and, as a check, the traced network's MACs and params
against the built-in ResNet-50's (the same module, traced under its own name).
"""
from __future__ import annotations

import argparse
import time

import harness as H
import rendering as R
# wt_jax after harness, which puts this repository first on sys.path.
# pylint: disable=g-import-not-at-top,wrong-import-position,g-bad-import-order
import jax
import jax.numpy as jnp

import wt_jax
from wt_jax.nets import cost
from wt_jax.nets import models
from wt_jax.nets import widths as W
# pylint: enable=g-import-not-at-top,wrong-import-position,g-bad-import-order

log = H.logger('trace_time')
NAME = 'resnet50_traced'


def _contenders(arch: str, resolution: int):
  uniform = W.uniform(arch)
  names = uniform.names

  def factory(widths, num_classes):
    return models.build_model(
        W.Widths(arch, uniform.depth, [widths[n] for n in names]),
        num_classes)

  model = models.build_model(uniform, 1000)
  x = jnp.zeros((2, resolution, resolution, 3))
  key = jax.random.PRNGKey(0)

  def timed(fn):
    def run():
      t = time.perf_counter()
      fn()
      return time.perf_counter() - t, 1
    return H.in_process(lambda n: run(), 1)

  def register():
    wt_jax.register_arch(NAME, factory, uniform.as_dict(),
                         resolution=resolution, replace=True)

  def compile_forward():
    variables = jax.eval_shape(model.init, key, x)
    jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(
        variables, x).compile()

  return uniform, {
      'register': timed(register),
      'eval_shape': timed(lambda: jax.eval_shape(model.init, key, x)),
      'compile': timed(compile_forward)}


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--arch', default='resnet50')
  p.add_argument('--resolution', type=int, default=224)
  p.add_argument('--rounds', type=int, default=5)
  args = H.parse(p, dict(rounds=1), '1 round')
  t0 = time.perf_counter()
  uniform, contenders = _contenders(args.arch, args.resolution)
  rates = H.interleave(contenders, args.rounds, log=log)
  seconds = {n: H.median(ts) for n, ts in rates.turn_s.items()}
  traced = cost.count(W.uniform(NAME), args.resolution, 1000)
  hand = cost.count(uniform, args.resolution, 1000)
  ratios = {'register / eval_shape': seconds['register'] /
                                     seconds['eval_shape'],
            'register / compile': seconds['register'] / seconds['compile']}
  text = R.section(
      '## Registering a network: the trace (`bench/trace_time.py`)',
      R.facts({
          'network': f'{args.arch} (built-in module, registered as '
                     f'{NAME!r}), traced at {args.resolution}x'
                     f'{args.resolution}',
          'rounds': f'{args.rounds}, interleaved, in one process, after one '
                    'untimed priming turn each',
          'wall time of this benchmark':
              f'{time.perf_counter() - t0:.0f} s'}, ('setting', 'value')),
      R.table(['contender', 'seconds per turn (median)', 'min', 'max'], [
          [n, seconds[n], min(rates.turn_s[n]), max(rates.turn_s[n])]
          for n in contenders]),
      R.table(['ratio', 'value'], [[k, v] for k, v in ratios.items()]),
      R.table(['check', 'registered', 'built-in'], [
          ['MACs', f'{traced.macs:,}', f'{hand.macs:,}'],
          ['params', f'{traced.params:,}', f'{hand.params:,}'],
          ['layers', len(traced.layers), len(hand.layers)]]),
      R.cores_table({'rounds': rates.cores}))
  H.emit(args, text, dict(rates.raw(), turn_s=rates.turn_s, seconds=seconds,
                          ratios=ratios,
                          same=(traced.macs, traced.params) == (
                              hand.macs, hand.params)))


if __name__ == '__main__':
  main()
