r"""Runs the width-transfer pipeline from a config file.

  python -m wt_jax.main --config=configs/quickstart.py --workdir=/tmp/wt_quick

Override any field: `--config.seeds=0,1,2 --config.optimizer=autoslim`.
A re-run with the same workdir resumes. Exit codes: 0 done, 2 bad input
(config, widths file, data), 3 training diverged (NaN/inf).
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import wt_jax  # noqa: F401  (sets the XLA:CPU default before jax loads)
from wt_jax import errors  # pylint: disable=g-bad-import-order
from wt_jax import files
from wt_jax import pipeline
from wt_jax import train
from wt_jax.workdir import Workdir

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'output directory (default: ./workdir/<config name>)')
flags.mark_flags_as_required(['config'])


def main(argv) -> int:
  del argv
  config = _CONFIG.value
  train.maybe_initialize_distributed(config)
  workdir = _WORKDIR.value or os.path.join(
      'workdir', os.path.splitext(os.path.basename(
          flags.FLAGS['config'].config_filename))[0])
  try:
    results = pipeline.run(config, workdir)
  except (errors.BadInputError, errors.NonFiniteLossError) as e:
    logging.error('%s', e)
    print(f'error: {e}', file=sys.stderr)
    return errors.exit_code(e)
  if results is not None:
    print(files.read_text(Workdir(workdir).results_md))
  print(f'workdir: {os.path.abspath(workdir)}')
  return errors.EXIT_OK


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
