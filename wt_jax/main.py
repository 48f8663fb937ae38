r"""Runs the width-transfer pipeline from a config file.

  python -m wt_jax.main --config=configs/quickstart.py --workdir=/tmp/wt_quick

Override any field: `--config.seeds=0,1,2 --config.optimizer=autoslim`.
A re-run with the same workdir reuses what was made from the same inputs,
resumes what was interrupted and recomputes what the changed fields affect.

Exit codes:
  0    done
  2    bad input: a config field, flag, file or data problem (the message
       names it, its value and what is allowed)
  3    training diverged (NaN/inf loss; the message names the stage, the
       step and the learning-rate field)
  4    environment or resource failure: disk full, I/O error, the workdir is
       locked by another run
  130  interrupted (Ctrl-C or SIGTERM); re-run the same command to resume
  1    a bug (with its traceback)

Output: a header per stage, a progress bar per training loop (plain lines
when stdout is not a terminal), a summary line per stage and the results
table. `--verbosity=1` shows the libraries' INFO logs too.
"""
import os
import re
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TF loads

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import wt_jax  # noqa: F401  (sets the XLA:CPU default before jax loads)
from wt_jax import errors  # pylint: disable=g-bad-import-order
from wt_jax import interrupts
from wt_jax import pipeline
from wt_jax import report
from wt_jax import train
from wt_jax.workdir import Workdir
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'output directory (default: ./workdir/<config name>)')
flags.mark_flags_as_required(['config'])


def _override_of(argv, message: str) -> str:
  """The --config.FIELD argument a config error is about, if one matches."""
  names = re.findall(r"'([^']+)'", message)
  for arg in argv[1:]:
    path = arg.split('=')[0]
    if path.startswith('--config.') and any(
        n in path.split('.') for n in names):
      return path + ': '
  return ''


def parse_flags(argv):
  """absl's parser, with bad flags and config overrides as exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (KeyError, AttributeError, TypeError, ValueError, OSError) as e:
    # ml_collections raises these for an unknown field, a wrong type, or
    # a config file that does not load.
    message = str(e.args[0]) if e.args else repr(e)
    if isinstance(e, KeyError):
      message = 'unknown config field ' + message
    message = _override_of(argv, message) + message
  message = ' '.join(message.split())
  print(f'error: bad command line: {message} (see --helpfull; exit code '
        f'{errors.EXIT_BAD_INPUT})', file=sys.stderr)
  sys.exit(errors.EXIT_BAD_INPUT)


def _quiet_libraries() -> None:
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def _interrupt_message(e: KeyboardInterrupt) -> str:
  where = getattr(e, 'wt_jax_stage', None)
  step = getattr(e, 'wt_jax_step', None)
  at = (f' in stage {where}' if where else '') + (
      f' at step {step}' if step is not None else '')
  return f'interrupted{at}; re-run the same command to resume'


def main(argv) -> int:
  del argv
  interrupts.install()
  _quiet_libraries()
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join(
      'workdir', os.path.splitext(os.path.basename(
          flags.FLAGS['config'].config_filename))[0])
  try:
    train.maybe_initialize_distributed(config)
    results = pipeline.run(config, workdir)
  except KeyboardInterrupt as e:
    print(_interrupt_message(e), file=sys.stderr)
    return errors.EXIT_INTERRUPTED
  except (errors.BadInputError, errors.NonFiniteLossError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return errors.exit_code(e)
  if results is not None:
    print(report.markdown(results, full=False))
    print(f'full report: {Workdir(workdir).report("results.md")}')
  print(f'workdir: {workdir if "://" in workdir else os.path.abspath(workdir)}')
  return errors.EXIT_OK


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
