"""Shared helpers of the bench scripts (no jax import here).

* `REPO` on sys.path, so `import wt_jax` and `from wt_jax import defaults`
  work when a script runs as `python bench/<script>.py` from anywhere.
* `Worker`: one contender in its own subprocess, driven over stdin/stdout
  (`run N` -> seconds for N steps), so contenders with different XLA flags
  or frameworks can be interleaved A, B, A, B ... in one benchmark run.
* `interleave`: rounds of every contender, the order rotated each round;
  per-round img/s, medians and paired (same-round) ratios.
* CIFAR-10 JPEGs: `cifar_folder()` unzips the shared zip to /tmp once.
* Markdown tables and machine facts.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zipfile
from typing import Callable, Mapping, Optional, Sequence

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
if REPO not in sys.path:
  sys.path.insert(0, REPO)

YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
CIFAR_ZIP = os.environ.get('WT_BENCH_CIFAR_ZIP',
                           os.path.join(os.path.dirname(REPO), 'shared', 'data',
                                        'cifar10_jpeg.zip'))
CIFAR_DIR = os.environ.get('WT_BENCH_CIFAR_DIR', '/tmp/cifar10_jpeg')


# ----------------------------------------------------------------------------
# Environment of a worker process: XLA:CPU flag setting.
# ----------------------------------------------------------------------------


def xla_env(ynn: str = 'off', base: Optional[Mapping[str, str]] = None
            ) -> dict[str, str]:
  """A copy of the environment with the YNN fusion setting made explicit.

  ynn='off': `--xla_cpu_experimental_ynn_fusion_type=` (wt_jax's default);
  ynn='default': the flag removed and WT_JAX_KEEP_XLA_FLAGS=1, so XLA keeps
  its own default (YNN fusions on in jaxlib 0.10).
  """
  env = dict(os.environ if base is None else base)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith(YNN_FLAG)]
  if ynn == 'off':
    flags.append(YNN_FLAG + '=')
    env.pop('WT_JAX_KEEP_XLA_FLAGS', None)
  elif ynn == 'default':
    env['WT_JAX_KEEP_XLA_FLAGS'] = '1'
  else:
    raise ValueError(f'ynn={ynn!r}; allowed: off, default')
  env['XLA_FLAGS'] = ' '.join(flags)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env['PYTHONUNBUFFERED'] = '1'
  return env


# ----------------------------------------------------------------------------
# Workers: a contender in a subprocess.
# ----------------------------------------------------------------------------


class Worker:
  """`python script --worker ...` answering `run N` with the seconds taken.

  The worker prints one JSON line `{"ready": true, ...info}` once built and
  warmed up (compiled), then for each stdin line `run N` one JSON line
  `{"seconds": s, "items": k}` (items = images processed). `quit` ends it.
  Lines not starting with '{' (logs) are passed to stderr.
  """

  def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str]):
    self.name = name
    self.argv = list(argv)
    self.proc = subprocess.Popen(
        [sys.executable] + self.argv, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env=dict(env), text=True, bufsize=1,
        cwd=REPO)
    self.info: dict = {}
    self.error: Optional[str] = None

  def _read(self) -> dict:
    while True:
      line = self.proc.stdout.readline()
      if not line:
        code = self.proc.wait()
        raise RuntimeError(f'worker {self.name} exited (code {code}) '
                           f'without answering: {" ".join(self.argv)}')
      line = line.strip()
      if line.startswith('{'):
        return json.loads(line)
      if line:
        print(f'[{self.name}] {line}', file=sys.stderr)

  def wait_ready(self) -> dict:
    msg = self._read()
    if 'error' in msg:
      self.error = msg['error']
      self.close()
      raise RuntimeError(f'worker {self.name}: {self.error}')
    self.info = msg
    return msg

  def run(self, n: int) -> dict:
    self.proc.stdin.write(f'run {int(n)}\n')
    self.proc.stdin.flush()
    msg = self._read()
    if 'error' in msg:
      raise RuntimeError(f'worker {self.name}: {msg["error"]}')
    return msg

  def close(self):
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write('quit\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)
      except (OSError, subprocess.TimeoutExpired):
        self.proc.kill()
        self.proc.wait()


def serve(run: Callable[[int], tuple[float, int]], info: dict) -> None:
  """The worker side: announce readiness, then answer `run N` lines."""
  out = sys.stdout
  out.write(json.dumps({'ready': True, **info}) + '\n')
  out.flush()
  for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == 'quit':
      break
    if cmd[0] == 'run':
      try:
        cpu0 = cpu_seconds()
        seconds, items = run(int(cmd[1]))
        out.write(json.dumps({'seconds': seconds, 'items': items,
                              'cpu': cpu_seconds() - cpu0}) + '\n')
      except Exception as e:  # pylint: disable=broad-except
        out.write(json.dumps({'error': f'{type(e).__name__}: {e}'}) + '\n')
      out.flush()


def in_process(run: Callable[[int], tuple[float, int]], n: int
               ) -> Callable[[], dict]:
  """A contender running in this process: `run(n)` -> (seconds, items)."""

  def contender():
    cpu0 = cpu_seconds()
    seconds, items = run(n)
    return {'seconds': seconds, 'items': items, 'cpu': cpu_seconds() - cpu0}

  return contender


def cpu_seconds() -> float:
  """User + system CPU seconds of this process (all its threads)."""
  import resource  # pylint: disable=g-import-not-at-top
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def fail(message: str) -> None:
  """Worker side: report a build failure as a JSON line and exit."""
  sys.stdout.write(json.dumps({'error': message}) + '\n')
  sys.stdout.flush()
  sys.exit(0)


# ----------------------------------------------------------------------------
# Interleaved rounds.
# ----------------------------------------------------------------------------


def cpu_probe(mbytes: int = 24) -> float:
  """Effective cores right now: 2 x t(1 thread) / t(2 threads at once).

  Hashing releases the GIL, so two threads hashing at once take as long as
  one on an idle 2-core machine (2.0) and twice as long when only one core
  is effectively ours (1.0): this machine has long phases where a neighbour
  takes about one core without any steal time showing in /proc/stat.
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  data = b'\x5a' * (mbytes << 20)

  def work():
    hashlib.sha256(data).digest()

  t = time.perf_counter()
  work()
  one = time.perf_counter() - t
  threads = [threading.Thread(target=work) for _ in range(2)]
  t = time.perf_counter()
  for th in threads:
    th.start()
  for th in threads:
    th.join()
  two = time.perf_counter() - t
  return min(2.0, 2.0 * one / two)


class Rounds(dict):
  """{contender: [items/s per round]} plus `.cores` (effective cores per
  round) and `.cpu` ({contender: [items per CPU-second per round]})."""

  def __init__(self, names):
    super().__init__({n: [] for n in names})
    self.cores: list[float] = []
    self.cpu: dict[str, list[float]] = {n: [] for n in names}
    self.turn_s: dict[str, list[float]] = {n: [] for n in names}


def interleave(contenders: Mapping[str, Callable[[], Mapping[str, float]]],
               rounds: int, gap_s: float = 0.3, log=None, probe: bool = True,
               prime: bool = True) -> Rounds:
  """Runs every contender once per round, the order rotated each round.

  Each contender is a nullary callable returning {'seconds', 'items'} and
  optionally 'cpu' (CPU seconds of its process). The effective cores of a
  round is the smallest `cpu_probe` value taken before each contender's turn
  and after the last (1.0 where no probe is taken). A short pause between
  contenders lets spinning worker threads of the previous one go idle. With
  `prime`, every contender first runs one untimed turn (page faults, lazy
  initialization and buffers after a long idle do not land in round 1).
  """
  names = list(contenders)
  out = Rounds(names)
  if prime:
    for n in names:
      contenders[n]()
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    probes = []
    for n in order:
      time.sleep(gap_s)
      if probe:
        probes.append(cpu_probe())
      t = time.perf_counter()
      m = contenders[n]()
      out.turn_s[n].append(time.perf_counter() - t)
      out[n].append(m['items'] / m['seconds'])
      cpu = m.get('cpu')
      out.cpu[n].append(m['items'] / cpu if cpu else float('nan'))
    if probe:
      probes.append(cpu_probe())
    out.cores.append(min(probes) if probes else 1.0)
    if log:
      log(f'round {r + 1}/{rounds} (effective cores {out.cores[-1]:.2f}): ' +
          ', '.join(f'{n} {out[n][-1]:.1f}/s ({out.turn_s[n][-1]:.1f} s)'
                    for n in names))
  return out


def quiet_rounds(cores: Sequence[float], threshold: float = 1.7
                 ) -> list[int]:
  """Indices of the rounds where both cores were ours throughout."""
  return [i for i, c in enumerate(cores) if c >= threshold]


def pick(xs: Sequence[float], idx: Sequence[int]) -> list[float]:
  return [xs[i] for i in idx]


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs)) if xs else float('nan')


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
  """Median over rounds of a[r] / b[r] (noise in a round hits both)."""
  return median([x / y for x, y in zip(a, b)])


def spread(xs: Sequence[float]) -> str:
  """min-max of the rounds, for the tables."""
  if not xs:
    return ''
  return f'{min(xs):.3g}-{max(xs):.3g}'


# ----------------------------------------------------------------------------
# Data, tables, machine.
# ----------------------------------------------------------------------------


def cifar_folder(path: str = CIFAR_DIR) -> str:
  """The CIFAR-10 JPEGs unzipped under `path` (done once; never in the repo)."""
  marker = os.path.join(path, '.complete')
  if os.path.exists(marker):
    return path
  if os.path.abspath(path).startswith(REPO + os.sep):
    raise ValueError(f'refusing to unzip the data set into the repo: {path}')
  if not os.path.exists(CIFAR_ZIP):
    raise FileNotFoundError(f'CIFAR-10 JPEG zip not found: {CIFAR_ZIP} (set '
                            'WT_BENCH_CIFAR_ZIP)')
  with zipfile.ZipFile(CIFAR_ZIP) as z:
    z.extractall(path)
  with open(marker, 'w') as f:
    f.write('ok\n')
  return path


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  def cell(x):
    if isinstance(x, float):
      return f'{x:.3g}' if abs(x) < 1000 else f'{x:,.0f}'
    return str(x)
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(cell(x) for x in r) + ' |' for r in rows]
  return '\n'.join(lines)


def verdict(value: float, target: float, higher_is_better: bool = True,
            rounds: Sequence[float] = (), cpu: Optional[float] = None) -> str:
  """'meets' / 'MISSES' the target by the wall-clock ratio, qualified by the
  CPU-time ratio and by whether the same-round ratios straddle the target."""
  def ok(x):
    return x >= target if higher_is_better else x <= target
  sign = '>=' if higher_is_better else '<='
  if ok(value):
    if cpu is not None and not ok(cpu):
      return f'meets {sign} {target:g} (CPU-time ratio does not)'
    return f'meets {sign} {target:g}'
  if cpu is not None and ok(cpu):
    return (f'wall-clock misses {sign} {target:g}, CPU time meets it: '
            'noise')
  if rounds and min(rounds) <= target <= max(rounds):
    return f'misses {sign} {target:g} (within round-to-round noise)'
  return f'MISSES {sign} {target:g}'


def comparison_table(rates: Rounds, comparisons, *,
                     unit: str = 'img/s', label_col: Optional[str] = None,
                     label: str = '') -> tuple[list[str], list[list], list]:
  """Header, rows and readings of A/B comparisons over interleaved rounds.

  comparisons: (a, b, what, target or None, higher_is_better). The ratio is
  the median of the same-round ratios A/B over all rounds, and separately
  over the quiet rounds (both cores ours: `quiet_rounds`), and as the same
  median of CPU-time ratios (items per CPU-second of A / of B), which the
  noise hardly moves.
  """
  cores = rates.cores
  quiet = quiet_rounds(cores)
  header = ([label_col] if label_col else []) + [
      'comparison (A / B)', f'A {unit}', f'B {unit}', 'ratio A/B',
      'per-round min-max', 'ratio, quiet rounds', 'CPU-time ratio',
      'target', 'verdict']
  rows, readings = [], []
  for a, b, what, target, higher in comparisons:
    if a not in rates or b not in rates:
      continue
    per_round = [x / y for x, y in zip(rates[a], rates[b])]
    ratio = median(per_round)
    q = median(pick(per_round, quiet)) if quiet else float('nan')
    cpu = median([x / y for x, y in zip(rates.cpu[a], rates.cpu[b])])
    v = (verdict(ratio, target, higher, per_round, cpu)
         if target is not None else 'reported')
    rows.append(([label] if label_col else []) + [
        what, median(rates[a]), median(rates[b]), f'{ratio:.3f}',
        f'{min(per_round):.3f}-{max(per_round):.3f}',
        f'{q:.3f} ({len(quiet)}/{len(cores)})' if quiet else
        f'- (0/{len(cores)})', f'{cpu:.3f}',
        f'{">=" if higher else "<="} {target:g}'
        if target is not None else '-', v])
    readings.append(dict(a=a, b=b, what=what, label=label, ratio=ratio,
                         quiet=q, n_quiet=len(quiet), rounds=len(cores),
                         cpu=cpu,
                         min=min(per_round), max=max(per_round),
                         target=target, higher=higher, verdict=v))
  return header, rows, readings


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def cpu_flags(wanted=('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')
              ) -> list[str]:
  """Which of the `wanted` instruction-set flags /proc/cpuinfo lists."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          have = set(line.split(':', 1)[1].split())
          return [w for w in wanted if w in have]
  except OSError:
    pass
  return []


def torch_version() -> Optional[str]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
    return torch.__version__
  except ImportError:
    return None


def load_avg() -> str:
  try:
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())
  except OSError:
    return 'n/a'


def write_fragment(path: Optional[str], text: str) -> None:
  """Writes a script's markdown section for run_all (atomically)."""
  if not path:
    return
  from wt_jax import files  # pylint: disable=g-import-not-at-top
  files.write_text(path, text)
