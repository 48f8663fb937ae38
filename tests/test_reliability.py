"""Reliability: no silent nonsense, no lost work, one clear line per bad input.

One test (or more) per defect of the issue that listed them: a result that
means nothing, finished work thrown away, or a traceback where a clear exit
is documented.
"""
import errno
import json
import os
import re
import shutil
import sys
import time

import numpy as np
from PIL import Image
import pytest

from wt_jax import defaults
from wt_jax import errors
from wt_jax.nets import widths as W
from wt_jax.optimizers import registry
from wt_jax.run import cli_args
from wt_jax.run import pipeline
from wt_jax.run import reuse
from wt_jax.transfer import problem as problem_lib
from wt_jax.transfer import projection
from wt_jax.util import files
from wt_jax.util.workdir import Lock

from _tiny import REPO
from _tiny import tiny_config


def _images(root, layout, side=8, seed=0):
  """root/<split>/<class>/<i>.png for {split: {class: count}}."""
  rng = np.random.default_rng(seed)
  for split, classes in layout.items():
    for name, count in classes.items():
      os.makedirs(root / split / name, exist_ok=True)
      for i in range(count):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), np.uint8)).save(
            root / split / name / f'{i}.png')
  return root


def _refused(tmp_path, match, error=errors.BadInputError, **over):
  """pipeline.run refuses `over` before writing anything."""
  root = tmp_path / 'wd'
  with pytest.raises(error, match=match) as e:
    pipeline.run(tiny_config(**over), str(root))
  assert errors.exit_code(e.value) == errors.EXIT_BAD_INPUT
  assert not root.exists() or not any(root.iterdir()), list(root.iterdir())
  return e.value


# ----------------------------------------------------------------------------
# 1. A classification source has two classes or more, and examples in every
#    split the run reads.
# ----------------------------------------------------------------------------


def test_a_folder_with_one_class_is_refused_naming_it(tmp_path):
  root = _images(tmp_path / 'one', {'train': {'cat': 4}, 'test': {'cat': 2}})
  _refused(tmp_path, re.escape(f"config.data.source='folder:{root}': 1 class "
                               "found ('cat'); allowed: a classification "
                               'source with at least two classes'),
           **{'data.source': f'folder:{root}'})


def test_an_empty_val_split_is_refused_when_an_optimizer_needs_it(tmp_path):
  # One train image per class: nothing can be held out for val.
  root = _images(tmp_path / 'tiny', {'train': {'a': 1, 'b': 1},
                                     'test': {'a': 1, 'b': 1}})
  _refused(tmp_path, 'the val split is empty',
           **{'data.source': f'folder:{root}', 'data.resolution': 8})


# ----------------------------------------------------------------------------
# 2, 9, 13. The command line: the last value wins; a bad config file or
#    field is one line naming it.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('argv, expected', [
    (['p', '--config=c.py', '--config.seeds=0,1', '--config.seeds=2,'],
     ['p', '--config=c.py', '--config.seeds=2,']),
    (['p', '--config.seeds', '0,1', '--config.train.base_lr=0.1',
      '--config.seeds=2,', '--config.train.base_lr', '0.2'],
     ['p', '--config.seeds=2,', '--config.train.base_lr', '0.2']),
    (['p', '--config.train.batch_seeds', '--noconfig.train.batch_seeds',
      '--config.x=-1', '-config.x', '-3'],
     ['p', '--noconfig.train.batch_seeds', '-config.x', '-3']),
    (['p', '--config=a.py', '--workdir=w', '--config=b.py'],
     ['p', '--config=a.py', '--workdir=w', '--config=b.py']),
])
def test_the_last_value_of_a_config_field_wins(argv, expected):
  assert cli_args.last_value_wins(argv) == expected


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_config_file_problems_name_the_file(tmp_path):
  problem = cli_args.config_file_problem
  missing = str(tmp_path / 'missing.py')
  assert problem(['p', f'--config={missing}']) == (
      f'--config={missing}: the config file {missing} does not exist')
  assert problem(['p', f'--config={tmp_path}']) == (
      f'--config={tmp_path}: {tmp_path} is not a file; allowed: a Python '
      'config file')
  bad = _write(tmp_path / 'bad.py', 'def get_config(:\n  pass\n')
  assert re.fullmatch(
      re.escape(f'--config={bad}: {bad} is not a valid Python config file: a '
                'syntax error at line 1 (') + r'.+\); allowed: a Python file '
      r'defining get_config\(\)', problem(['p', '--config', bad]))
  for name, text in (('none.py', 'x = 1\n'), ('c.json', '{"arch": "x"}\n')):
    path = _write(tmp_path / name, text)
    assert problem(['p', f'--config={path}']).startswith(
        f'--config={path}: {path} ')
  assert 'defines no get_config()' in problem(
      ['p', f'--config={tmp_path / "none.py"}'])
  raising = _write(tmp_path / 'raising.py',
                   'def get_config():\n  return 1 / 0\n')
  assert problem(['p', f'--config={raising}']) == (
      f'--config={raising}: get_config() of {raising} raised '
      'ZeroDivisionError: division by zero')
  assert problem(['p', f'--config={REPO}/configs/quickstart.py']) is None


def test_an_unknown_nested_field_lists_the_near_names():
  config = defaults.get_config()
  message = cli_args.unknown_field(
      ['p', '--config.train.nonexistent=3'], config)
  assert message.startswith(
      "--config.train.nonexistent: config.train has no field 'nonexistent'; ")
  assert 'config.train has: base_lr, batch_seeds, batch_size' in message
  assert cli_args.unknown_field(['p', '--config.trian.batch_size=3'], config
                                ).startswith(
      "--config.trian.batch_size: config has no field 'trian'; did you mean "
      'config.train')
  assert cli_args.unknown_field(['p', '--config.train.epochs=3'],
                                config) is None


# ----------------------------------------------------------------------------
# 3, 4. Fingerprints by content and workdir-relative names; a missing or
#    changed output is noticed.
# ----------------------------------------------------------------------------


def _lines(capsys):
  return [l.strip() for l in capsys.readouterr().out.splitlines()
          if ': reused' in l or ': recomputing' in l or ': resuming' in l]


@pytest.mark.slow
def test_a_moved_copied_or_aliased_workdir_reuses_everything(tmp_path,
                                                              capsys,
                                                              monkeypatch):
  stages = ('optimize', 'transfer', 'train_transferred', 'train_uniform')
  c = tiny_config(stages=stages)
  first = tmp_path / 'first'
  pipeline.run(c, str(first))
  capsys.readouterr()
  final = first / 'train' / 'uniform' / 'seed_0' / 'final.json'
  before = json.loads(final.read_text())
  # Pending, as if killed after its last checkpoint: no final.json, no
  # manifest.
  final.unlink()
  (final.parent / 'outputs.json').unlink()
  moved = tmp_path / 'moved'
  shutil.move(str(first), str(moved))
  copied = tmp_path / 'copied'
  shutil.copytree(moved, copied, symlinks=True)
  alias = tmp_path / 'alias'
  alias.symlink_to(copied)
  keys = ['optimize', 'transfer', 'train_transferred/seed_0',
          'train_uniform/seed_0']
  pipeline.run(c, str(moved))
  assert _lines(capsys) == [f'{k}: reused (made from the same inputs)'
                            for k in keys[:3]] + [f'{keys[3]}: resuming']
  after = json.loads((moved / final.relative_to(first)).read_text())
  timing = ('wall_time_s', 'img_per_s', 'time_parts')
  assert {k: v for k, v in after.items() if k not in timing} == {
      k: v for k, v in before.items() if k not in timing}
  monkeypatch.chdir(tmp_path)
  for root in ('alias', str(alias), os.path.join('..', tmp_path.name, 'copied')):
    pipeline.run(c, root)
    lines = _lines(capsys)
    assert lines[:3] == [f'{k}: reused (made from the same inputs)'
                         for k in keys[:3]], (root, lines)
  assert not (copied / 'superseded').exists()
  assert not (moved / 'superseded').exists()


def test_a_widths_file_is_identified_by_its_content(tmp_path, capsys):
  projected = projection.project(problem_lib.from_config(tiny_config()),
                                 tiny_config().projection, divisor=2)
  one, two = tmp_path / 'one.json', tmp_path / 'two.json'
  W.save(str(one), projected.widths)
  shutil.copy(one, two)
  root = str(tmp_path / 'wd')
  pipeline.run(tiny_config(stages=('optimize', 'transfer'),
                           widths_file=str(one)), root)
  capsys.readouterr()
  pipeline.run(tiny_config(stages=('optimize', 'transfer'),
                           widths_file=str(two)), root)
  assert _lines(capsys) == ['optimize: reused (made from the same inputs)',
                            'transfer: reused (made from the same inputs)']


def test_a_deleted_or_changed_output_is_made_again_naming_it(tmp_path,
                                                             capsys):
  root = tmp_path / 'wd'
  c = tiny_config(stages=('optimize', 'transfer'))
  pipeline.run(c, str(root))
  history = (root / 'optimize' / 'history.json').read_text()
  capsys.readouterr()
  (root / 'optimize' / 'history.json').unlink()
  pipeline.run(c, str(root))
  lines = _lines(capsys)
  assert lines[0].startswith('optimize: recomputing (missing '
                             'optimize/history.json); old outputs moved to ')
  assert lines[1] == 'transfer: reused (made from the same inputs)'
  assert (root / 'optimize' / 'history.json').read_text() == history


def test_a_changed_output_is_not_reported(tmp_path, capsys):
  root = tmp_path / 'wd'
  c = tiny_config(stages=('optimize', 'transfer'))
  pipeline.run(c, str(root))
  r = pipeline.prepare(c, str(root))
  steps = pipeline.STAGES['transfer'].steps(r)
  assert reuse.is_fresh(r, steps[0])
  widths = root / 'widths' / 'transferred.json'
  widths.write_text(widths.read_text() + ' ')
  assert reuse.decide(r, steps[0]) == (
      'recompute', ['changed widths/transferred.json'])
  assert not reuse.is_fresh(r, steps[0])
  capsys.readouterr()
  pipeline.run(c, str(root))
  out = capsys.readouterr().out
  assert 'transfer: recomputing (changed widths/transferred.json)' in out


# ----------------------------------------------------------------------------
# 5, 6, 12, 16. The widths file and the projection.
# ----------------------------------------------------------------------------


def test_a_projection_larger_than_the_original_is_refused(tmp_path):
  # Digits are 8x8 here (data.resolution=0): a 16px projection is larger.
  _refused(tmp_path, re.escape(
      'config.projection.resolution=16 is invalid; allowed: 0 or an integer '
      '<= 8, the original resolution'), **{'projection.resolution': 16})


def _projected_widths_file(tmp_path, **widths):
  projected = projection.project(problem_lib.from_config(tiny_config()),
                                 tiny_config().projection, divisor=2)
  values = dict(projected.widths.as_dict(), **widths)
  path = tmp_path / 'projected.json'
  W.save(str(path), projected.widths.replace(list(values.values())))
  return str(path), projected


def test_the_report_names_the_widths_file_not_an_optimizer(tmp_path):
  path, _ = _projected_widths_file(tmp_path)
  res = pipeline.run(tiny_config(stages=('optimize', 'transfer', 'report'),
                                 widths_file=path), str(tmp_path / 'wd'))
  assert res['optimizer'] is None
  assert res['widths_from'].startswith(f'widths file {path} (sha256 ')
  text = (tmp_path / 'wd' / 'results.md').read_text()
  assert f'Widths from: widths file {path}' in text
  assert 'morphnet' not in text.split('\n\n')[1]


def test_a_widths_file_width_above_64x_names_the_group(tmp_path):
  path, projected = _projected_widths_file(tmp_path)
  name = projected.widths.names[2]
  full = W.uniform('resnet_tiny', 1.0, depth=projected.widths.depth,
                   divisor=2)[name]
  path, _ = _projected_widths_file(tmp_path, **{name: 64 * full + 1})
  _refused(tmp_path, re.escape(
      f"group '{name}' has width {64 * full + 1:,}; allowed: at most "
      f'{64 * full:,} (64 x its width {full} at width multiplier 1.0)'),
           widths_file=path)
  path, _ = _projected_widths_file(tmp_path, **{name: 64 * full})
  pipeline.prepare(tiny_config(widths_file=path), str(tmp_path / 'ok'))


def test_a_widths_file_that_is_a_directory_names_the_field(tmp_path):
  _refused(tmp_path, r"config.widths_file: widths file '.*' cannot be read: "
           'Is a directory; allowed: a JSON file', widths_file=str(tmp_path))


def test_defaults_say_the_widths_file_is_the_projected_networks():
  source = open(os.path.join(REPO, 'wt_jax', 'defaults.py')).read()
  block = source[:source.index('c.widths_file =')].rsplit('\n\n', 1)[-1]
  comment = ' '.join(l.strip(' #') for l in block.splitlines()
                     if l.strip().startswith('#'))
  assert 'projected' in comment and 'original network' in comment, comment


# ----------------------------------------------------------------------------
# 8. Non-finite numbers are refused up front, in every field.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('field, value', [
    ('train.epochs', float('inf')), ('train.base_lr', float('inf')),
    ('train.label_smoothing', float('nan')),
    ('morphnet.strength_knob', float('-inf')),
    ('projection.width_mult', float('nan')),
])
def test_a_non_finite_number_is_refused_in_any_field(tmp_path, field, value):
  _refused(tmp_path, re.escape(f'config.{field}={value!r} is invalid; '
                               'allowed: a finite number'),
           **{field: value})


# ----------------------------------------------------------------------------
# 10. A user's optimizer module that raises or registers badly.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('body, said', [
    ('raise RuntimeError("no GPU here")', 'RuntimeError at {path}:2: no GPU '
     'here'),
    ('wt_jax.register_optimizer("mine", lambda c, p, w: None)\n'
     'wt_jax.register_optimizer("mine", lambda c, p, w: None)',
     "ValueError at {path}:3: width optimizer 'mine' is registered already"),
    ('wt_jax.register_optimizer("morphnet", lambda c, p, w: None, '
     'replace=True)',
     "ValueError at {path}:2: 'morphnet' is a built-in width optimizer"),
    ('import no_such_package_here', "ModuleNotFoundError: No module named "
     "'no_such_package_here'"),
])
def test_a_bad_optimizer_module_names_the_module(tmp_path, monkeypatch, body,
                                                 said):
  name = f'user_opt_{abs(hash(body)) % 10**8}'
  path = tmp_path / f'{name}.py'
  path.write_text('import wt_jax\n' + body + '\n')
  monkeypatch.setattr(registry, 'REGISTRY',
                      dict(registry.REGISTRY))
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, name, raising=False)
  _refused(tmp_path, f'config.optimizer_module={name!r} is invalid; allowed:'
           f' an importable module that calls wt_jax.register_optimizer '
           f'\\(importing it raised {said.format(path=re.escape(str(path)))}',
           optimizer_module=name)


# ----------------------------------------------------------------------------
# 14. The lock file.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('content', ['', 'garbage{', '[1, 2]'])
def test_an_unreadable_lock_says_so_and_is_taken_over_when_old(tmp_path,
                                                               content):
  lock = tmp_path / '.lock'
  lock.write_text(content)
  with pytest.raises(errors.WorkdirLockedError) as e:
    Lock(str(tmp_path)).acquire()
  message = str(e.value)
  assert f'its lock file {lock} is unreadable (empty or not JSON' in message
  assert f'delete {lock} and re-run' in message and 'None' not in message
  old = time.time() - Lock.UNREADABLE_GRACE_S - 5
  os.utime(lock, (old, old))
  with Lock(str(tmp_path)):
    assert json.loads(lock.read_text())['pid'] == os.getpid()
  assert not lock.exists()
  assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left


# ----------------------------------------------------------------------------
# 15. A stage whose input no selected stage makes.
# ----------------------------------------------------------------------------


def test_a_stage_without_its_upstream_names_the_stages_to_add(tmp_path):
  _refused(tmp_path, re.escape(
      'stage train_transferred reads what stage transfer makes '
      '(widths/transferred.json), which is not made yet; add optimize and '
      'transfer (--config.stages=optimize,transfer,train_transferred)'),
           stages=('train_transferred',))


def test_a_stale_upstream_names_what_changed(tmp_path):
  root = str(tmp_path / 'wd')
  pipeline.run(tiny_config(stages=('optimize', 'transfer')), root)
  with pytest.raises(errors.ConfigError, match=re.escape(
      'which is made from other inputs (transfer.stacking: '
      "'stack_last_block' -> 'stack_average_block'); add transfer")):
    pipeline.run(tiny_config(stages=('train_transferred',), **{
        'transfer.stacking': 'stack_average_block'}), root)
  assert not os.path.exists(os.path.join(root, 'train'))


# ----------------------------------------------------------------------------
# 17. Disk full before the first write names the file and where.
# ----------------------------------------------------------------------------


def test_disk_full_at_the_start_names_the_file_and_the_stage(tmp_path,
                                                             monkeypatch):
  real = files._write_local  # pylint: disable=protected-access

  def full(path, data):
    if path.endswith('config.json'):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no filename
    return real(path, data)

  monkeypatch.setattr(files, '_write_local', full)
  root = str(tmp_path / 'wd')
  with pytest.raises(OSError) as e:
    pipeline.run(tiny_config(stages=('report',)), root)
  assert e.value.errno == errno.ENOSPC
  assert e.value.filename == os.path.join(root, 'config.json')
  assert e.value.wt_jax_stage == pipeline.START
  from wt_jax import main  # pylint: disable=g-import-not-at-top
  assert main._error_message(e.value) == (  # pylint: disable=protected-access
      f'in {pipeline.START}: No space left on device: {root}/config.json; '
      'free some space there, then re-run the same command to resume '
      '(finished steps and intact checkpoints are kept)')
  assert errors.exit_code(e.value) == errors.EXIT_ENVIRONMENT
  assert not os.path.exists(os.path.join(root, '.lock'))


# ----------------------------------------------------------------------------
# Multi-host: one file, one writer (a step's manifest holds its digest).
# ----------------------------------------------------------------------------


def test_only_process_0_writes_an_optimizers_summary(tmp_path, monkeypatch):
  """Each process of a multi-host run holds the result with its own wall
  time; had every process written summary.json, the optimize step's
  manifest could record one process's bytes and find another's (seen in a
  two-process run: the report then left out the optimization overhead)."""
  from wt_jax.optimizers import result as result_lib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  found = result_lib.OptimizeResult(W.uniform('resnet_tiny'), 1, 1, 1.0, 2.5,
                                    {})
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  result_lib.save(str(tmp_path), found)
  assert not (tmp_path / result_lib.SUMMARY).exists()
  monkeypatch.setattr(jax, 'process_index', lambda: 0)
  result_lib.save(str(tmp_path), found)
  assert result_lib.load(str(tmp_path)) == found
