"""Every error wt_jax raises on purpose, and the exit code the CLI gives it.

A leaf module: it imports nothing from wt_jax, so any module may raise these
without an import circle.

| class | exit code | meaning |
|---|---:|---|
| `BadInputError` and subclasses | 2 | a config field, flag, file or data problem |
| `NonFiniteLossError` | 3 | training diverged (NaN or inf loss) |
| `EnvironmentFailure`, and an `OSError` such as disk full or an I/O error | 4 | an environment or resource failure (also: the workdir is locked by another run) |
| `KeyboardInterrupt` (Ctrl-C, SIGTERM) | 130 | interrupted; re-running the same command resumes |
| anything else | 1 | a bug (the CLI prints its traceback) |

`BadInputError` is a `ValueError` and `NonFiniteLossError` a
`FloatingPointError`, so callers that catch the builtin types keep working.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERRUPTED = 130


class BadInputError(ValueError):
  """A config field, flag, file or data problem; the message names it."""
  exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
  """A config field with a value outside what is allowed."""


class DataError(ConfigError):
  """Bad data, or a bad `config.data` field."""


class ArchError(ConfigError):
  """An unknown architecture name or an invalid depth."""


class WidthError(BadInputError):
  """An invalid width vector or width file."""


class InfeasibleTargetError(ConfigError):
  """No rounded width vector of this structure meets the MACs target."""


class CheckpointMismatchError(BadInputError):
  """The checkpoints in a workdir belong to another width vector or model."""


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or inf."""
  exit_code = EXIT_DIVERGED

  def __init__(self, step: int, value: float, message: str):
    super().__init__(message)
    self.step = step
    self.value = value


class EnvironmentFailure(OSError):
  """The machine, not the input: disk full, I/O error, a held lock."""
  exit_code = EXIT_ENVIRONMENT


class WorkdirLockedError(EnvironmentFailure):
  """Another live run holds the workdir's lock."""


def exit_code(error: BaseException) -> int:
  """The documented exit code of `error` (1 for anything unexpected)."""
  if isinstance(error, KeyboardInterrupt):
    return EXIT_INTERRUPTED
  if hasattr(error, 'exit_code'):
    return int(error.exit_code)
  if isinstance(error, OSError):
    return EXIT_ENVIRONMENT
  return EXIT_BUG
