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
import errno
import logging as std_logging
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TF loads

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import wt_jax  # noqa: F401  (sets the XLA:CPU default before jax loads)
from wt_jax import errors
from wt_jax.run import cli_args
from wt_jax.util import console  # pylint: disable=g-bad-import-order
from wt_jax.util import interrupts

with console.quiet_native_stderr():  # TensorFlow's C++ start-up lines
  from wt_jax.run import pipeline
  from wt_jax import report
  from wt_jax import train
  from wt_jax.util.workdir import Workdir
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'output directory (default: ./workdir/<config name>)')
flags.mark_flags_as_required(['config'])


def _bad_command_line(message: str):
  message = ' '.join(message.split())
  print(f'error: bad command line: {message} (see --helpfull; exit code '
        f'{errors.EXIT_BAD_INPUT})', file=sys.stderr)
  sys.exit(errors.EXIT_BAD_INPUT)


def parse_flags(argv):
  """absl's parser, with bad flags, config files and overrides as exit 2.

  A `--config.FIELD` given twice keeps its last value (`cli_args`).
  """
  argv = cli_args.last_value_wins(argv)
  problem = cli_args.config_file_problem(argv)
  if problem:
    _bad_command_line(problem)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    # absl's flags.Error, and ml_collections' KeyError, AttributeError,
    # TypeError or ValueError for an unknown field or a value of the wrong
    # type.
    message = str(e.args[0]) if e.args else repr(e)
    _bad_command_line(
        cli_args.unknown_field(argv, cli_args.load_config(argv)) or message)


def _is_library_noise(record) -> bool:
  """orbax's and asyncio's own log lines about a failed save or read: the
  failure itself reaches wt_jax as an exception, reported in one line."""
  return record.levelno < std_logging.CRITICAL and (
      record.name == 'asyncio' or
      f'{os.sep}orbax{os.sep}' in (record.pathname or ''))


def _quiet_libraries() -> None:
  """Without --verbosity: warnings and errors only, none of orbax's."""
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(
        lambda record: not _is_library_noise(record))


def _error_message(e: BaseException) -> str:
  """One line: an OSError (disk full, I/O error) names its file and the
  stage it stopped."""
  if not isinstance(e, OSError) or not e.errno:
    return str(e)
  stage = getattr(e, 'wt_jax_stage', None)
  where = {None: '', pipeline.START: f'in {stage}: '}.get(
      stage, f'in stage {stage}: ')
  text = where + str(e.strerror or e) + (
      f': {e.filename}' if e.filename else '')
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    text += ('; free some space there, then re-run the same command to '
             'resume (finished steps and intact checkpoints are kept)')
  return text


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
    print(f'error: {_error_message(e)}', file=sys.stderr)
    return errors.exit_code(e)
  if results is not None:
    print(report.markdown(results, full=False))
    print(f'full report: {Workdir(workdir).report("markdown")}')
  print(f'workdir: {workdir if "://" in workdir else os.path.abspath(workdir)}')
  return errors.EXIT_OK


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
