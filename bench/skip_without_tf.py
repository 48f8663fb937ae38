"""pytest plugin of the accelerator check: without TensorFlow, a test that
needs it is skipped (with the reason), not failed.

  PYTHONPATH=bench python -m pytest -p skip_without_tf ...

Active only when `tensorflow` or `tensorflow_datasets` cannot be imported
(a JAX-only GPU/TPU machine, or `PYTHONPATH=../shared/tools/block_tf`).
Then a test module whose import fails with an ImportError naming
TensorFlow, TFDS, tf_keras or clu is reported as skipped instead of as a
collection error (which would stop the whole run), and so is a test whose
setup or body raises such an ImportError. Every other error, including an
ImportError of anything else, stays an error. `-rs` lists the reasons.
"""
from __future__ import annotations

import importlib.util
import re

import pytest

NEEDED = ('tensorflow', 'tensorflow_datasets')
NAMES = NEEDED + ('tf_keras', 'clu')
_IMPORT_ERROR = re.compile(
    r'(?:ModuleNotFoundError|ImportError): (?:[^\n]*\W)?('
    + '|'.join(NAMES) + r')\b[^\n]*')


def _missing() -> tuple[str, ...]:
  out = []
  for name in NEEDED:
    try:
      if importlib.util.find_spec(name) is None:
        out.append(name)
    except (ImportError, ValueError):  # blocked, or a broken install
      out.append(name)
  return tuple(out)


MISSING = _missing()


def _reason(text: str):
  match = _IMPORT_ERROR.search(text)
  if not match:
    return None
  return f'needs TensorFlow/TFDS (not importable here): {match.group(0)}'


def _tf_import_error(exc):
  """The message of `exc` if it (or its cause) is an ImportError naming
  TensorFlow, TFDS, tf_keras or clu; else None."""
  seen = set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    if isinstance(exc, ImportError):
      name = (getattr(exc, 'name', None) or '').split('.')[0]
      text = f'{type(exc).__name__}: {exc}'
      if name in NAMES:
        return f'needs TensorFlow/TFDS (not importable here): {text}'
      reason = _reason(text)
      if reason:
        return reason
    exc = exc.__cause__ or exc.__context__
  return None


def pytest_report_header(config):
  del config
  if MISSING:
    return (f'skip_without_tf: {", ".join(MISSING)} not importable; tests '
            'that fail importing them are reported as skipped')
  return 'skip_without_tf: TensorFlow and TFDS importable (inactive)'


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
  outcome = yield
  report = outcome.get_result()
  if not MISSING or not report.failed:
    return
  reason = _reason(str(report.longrepr))
  if reason:
    report.outcome = 'skipped'
    report.longrepr = (str(collector.path), None, f'Skipped: {reason}')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if not MISSING or not report.failed or call.excinfo is None:
    return
  reason = _tf_import_error(call.excinfo.value)
  if reason:
    report.outcome = 'skipped'
    report.longrepr = (str(item.path), item.location[1], f'Skipped: {reason}')
