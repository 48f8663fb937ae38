"""The cost command line, and the cost functions under the name `wt_jax.cost`.

  python -m wt_jax.cost --arch=resnet18 --resolution=224 --json
  python -m wt_jax.cost --arch=my_net --arch_module=my_pkg.nets

(`--arch_module` is imported first: a module that registers a network with
`wt_jax.register_arch`.) Prints the width vector and the per-layer table of
`nets.cost` (or one JSON object); exit 2 on bad input. The counting itself
lives in `wt_jax/nets/cost.py`; its public names are re-exported here, so
`from wt_jax import cost; cost.count(...)` works as in the README.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

from absl import app
from absl import flags

from wt_jax.errors import BadInputError
from wt_jax.errors import EXIT_BAD_INPUT
from wt_jax.nets import architectures
from wt_jax.nets import custom_archs
from wt_jax.nets import widths as widths_lib
from wt_jax.nets.cost import Cost  # pylint: disable=unused-import
from wt_jax.nets.cost import count
from wt_jax.nets.cost import human  # pylint: disable=unused-import
from wt_jax.nets.cost import macs  # pylint: disable=unused-import
from wt_jax.nets.cost import params  # pylint: disable=unused-import
from wt_jax.nets.cost import table
from wt_jax.nets.cost import to_json
from wt_jax.nets.cost import TRAIN_MACS_FACTOR  # pylint: disable=unused-import
from wt_jax.nets.cost import train_macs_per_example  # pylint: disable=unused-import
from wt_jax.nets.cost import unpadded_macs  # pylint: disable=unused-import
from wt_jax.util import validation

__all__ = ['Cost', 'TRAIN_MACS_FACTOR', 'count', 'human', 'macs', 'main',
           'params', 'table', 'to_json', 'train_macs_per_example',
           'unpadded_macs']


def _define_flags():
  """The CLI's flags; defined only when this module runs as the program."""
  return dict(
      arch=flags.DEFINE_string(
          'arch', None, f'architecture: {", ".join(architectures.NAMES)}, '
          'or one that --arch_module registers'),
      arch_module=flags.DEFINE_string(
          'arch_module', '', 'a module to import first (it calls '
          'wt_jax.register_arch)'),
      width_mult=flags.DEFINE_float('width_mult', 1.0,
                                    'uniform width multiplier'),
      depth=flags.DEFINE_list('depth', [], 'blocks per stage, e.g. 2,2,2,2'),
      resolution=flags.DEFINE_integer(
          'resolution', 0, 'input side (0: 224 ImageNet stem, 32 CIFAR)'),
      num_classes=flags.DEFINE_integer('num_classes', 1000, 'classes'),
      widths=flags.DEFINE_string('widths', None, 'width vector JSON file'),
      json=flags.DEFINE_bool('json', False, 'print one JSON object'))


def _depth_flag(items) -> Optional[list[int]]:
  try:
    return [int(d) for d in items] or None
  except ValueError:
    validation.fail('--depth', ','.join(items),
                    'comma-separated integers >= 1, e.g. 2,2,2,2')


def main(flag_values) -> int:
  """Prints the cost table (or JSON); 0 on success, 2 on bad input."""
  f = {k: v.value for k, v in flag_values.items()}
  try:
    custom_archs.import_module(f['arch_module'], '--arch_module')
    depth = _depth_flag(f['depth'])
    if f['widths']:
      widths = widths_lib.load(f['widths'], expect_arch=f['arch'],
                               expect_depth=depth)
    else:
      if not f['arch']:
        validation.fail('--arch', None, 'one of ' +
                        ', '.join(architectures.names()) +
                        ' (or pass --widths=FILE.json)')
      widths = widths_lib.uniform(f['arch'], f['width_mult'], depth)
    resolution = (f['resolution'] or
                  architectures.default_resolution(widths.spec))
    result = count(widths, resolution, f['num_classes'])
  except BadInputError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_BAD_INPUT
  if f['json']:
    print(json.dumps(to_json(widths, result, resolution, f['num_classes'])))
  else:
    print(f'resolution={resolution} num_classes={f["num_classes"]}')
    print(table(widths, result))
  return 0


if __name__ == '__main__':
  _FLAGS = _define_flags()
  app.run(lambda argv: sys.exit(main(_FLAGS)))
