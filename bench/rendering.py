"""Markdown tables of benchmark results (tables and headings, no prose).

What the numbers mean is written by a person in results/bench.md's
"Reading" section (`kept_section` carries it over when run_all rewrites the
file); nothing here draws conclusions.

* `table(header, rows)`: one markdown table; floats to 3 significant digits
  (thousands with separators).
* `facts(pairs)`: a two-column table of a run's settings or facts.
* `comparison_table(comparisons)`: the rows of `harness.compare`.
* `section(heading, *blocks)`: a heading and its blocks, blank-line
  separated.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence


def cell(x) -> str:
  if isinstance(x, float):
    return f'{x:.3g}' if abs(x) < 1000 else f'{x:,.0f}'
  return str(x)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(cell(x) for x in r) + ' |' for r in rows]
  return '\n'.join(lines)


def facts(pairs: Mapping[str, object] | Iterable[tuple[str, object]],
          header: Sequence[str] = ('', 'value')) -> str:
  """A two-column table: one (name, value) row per fact."""
  items = pairs.items() if isinstance(pairs, Mapping) else pairs
  return table(header, [[k, v] for k, v in items])


def section(heading: str, *blocks: Optional[str]) -> str:
  """`heading` and the non-empty `blocks`, separated by blank lines."""
  return '\n\n'.join([heading] + [b.rstrip() for b in blocks if b]) + '\n'


def comparison_table(comparisons: Sequence[Mapping], *, unit: str = 'img/s',
                     label_col: Optional[str] = None) -> str:
  """A table of `harness.compare` results (with their labels in the
  `label_col` column, if given)."""
  header = ([label_col] if label_col else []) + [
      'comparison (A / B)', f'A {unit}', f'B {unit}', 'ratio A/B',
      'per-round min-max', 'ratio, quiet rounds', 'CPU-time ratio',
      'target', 'verdict']
  rows = []
  for c in comparisons:
    quiet = (f'{c["quiet"]:.3f} ({c["n_quiet"]}/{c["rounds"]})'
             if c['n_quiet'] else f'- (0/{c["rounds"]})')
    target = (f'{">=" if c["higher"] else "<="} {c["target"]:g}'
              if c['target'] is not None else '-')
    rows.append(([c['label']] if label_col else []) + [
        c['what'], c['rate_a'], c['rate_b'], f'{c["ratio"]:.3f}',
        f'{c["min"]:.3f}-{c["max"]:.3f}', quiet, f'{c["cpu"]:.3f}', target,
        c['verdict']])
  return table(header, rows)


def hlo_table(programs: Mapping[str, Mapping], per: str = 'step') -> str:
  """XLA's cost analysis of compiled programs ({name: hlo_stats}), a row
  each: GFLOP and MB accessed per `per`, copy ops, fusions."""
  return table(['program', f'GFLOP / {per}', f'MB accessed / {per}',
                'copy ops', 'fusions'],
               [[name, f'{h["flops"] / 1e9:.4f}', f'{h["bytes"] / 1e6:.2f}',
                 h['copies'], h['fusions']] for name, h in programs.items()])


def cores_table(rounds_by_label: Mapping[str, Sequence[float]]) -> str:
  """Effective cores per round (the probe minimum), one row per run."""
  return table(['run', 'effective cores per round (probe minimum)'],
               [[label, ' '.join(f'{c:.2f}' for c in cores)]
                for label, cores in rounds_by_label.items()])


def kept_section(text: str, heading: str) -> str:
  """The section of markdown `text` that starts with the line `heading`,
  up to the next '## ' heading ('' if there is none)."""
  lines = text.splitlines(keepends=True)
  for i, line in enumerate(lines):
    if line.rstrip() == heading or line.startswith(heading + ' '):
      end = next((j for j in range(i + 1, len(lines))
                  if lines[j].startswith('## ')), len(lines))
      return ''.join(lines[i:end]).rstrip() + '\n'
  return ''
