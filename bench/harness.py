"""The benchmark harness: workers, interleaved rounds, paired ratios (no jax).

The machine the benchmarks run on is shared and noisy (for long phases a
neighbour takes about one of the two cores without any steal time showing),
so every benchmark measures its contenders side by side in the same run:

* `Worker`: one contender in its own subprocess (`bench/contenders.py`),
  driven over stdin/stdout (`run N` -> seconds for N steps), so contenders
  with different XLA flags or frameworks can be interleaved in one run;
  `in_process` wraps a contender living in this process instead.
* `interleave`: rounds of every contender, the order rotated each round,
  one untimed priming turn first; `cpu_probe` measures the effective cores
  before every turn and after the last ("quiet" rounds: both cores ours).
* `compare`: per comparison A / B, the median over rounds of the same-round
  ratio, its min-max, the same over the quiet rounds, the median CPU-time
  ratio (items per CPU-second, which the neighbour hardly moves) and the
  verdict against a target.
* A script's command line and outputs (`parse`, `emit`, `emit_parts`).

Importing this module puts the repository on sys.path and imports `wt_jax`
(which sets its XLA:CPU default before jax is imported; no jax here).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Mapping, Optional, Sequence

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
for _path in (REPO, BENCH):
  if _path not in sys.path:
    sys.path.insert(0, _path)

# XLA_FLAGS as the user set them, before wt_jax adds its default.
USER_XLA_FLAGS = os.environ.get('XLA_FLAGS', '')
# pylint: disable=g-import-not-at-top,wrong-import-position
import machine
import rendering
import wt_jax  # pylint: disable=unused-import  # its XLA:CPU default, first
from wt_jax.util import files
# pylint: enable=g-import-not-at-top,wrong-import-position

YNN_FLAG = machine.YNN_FLAG
QUIET_CORES = 1.7  # a round is quiet if every probe found this many cores


def logger(name: str) -> Callable[[str], None]:
  """`log(msg)`: a timestamped progress line on stderr."""

  def log(msg):
    print(f'[{name} {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr,
          flush=True)

  return log


# ----------------------------------------------------------------------------
# Workers: a contender in a subprocess.
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


class Worker:
  """`python program args...` answering `run N` with the seconds taken.

  The worker prints one JSON line `{"ready": true, ...info}` once built and
  warmed up (compiled), then for each stdin line `run N` one JSON line
  `{"seconds": s, "items": k, "cpu": c}` (items = images processed, cpu =
  CPU seconds of the worker process). `quit` ends it. Lines not starting
  with '{' (logs) are passed to stderr.
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

  def turn(self, n: int) -> Callable[[], dict]:
    """A contender for `interleave`: one `run n` per call."""
    return lambda: self.run(n)

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
        out.write(json.dumps(in_process(run, int(cmd[1]))()) + '\n')
      except Exception as e:  # pylint: disable=broad-except
        out.write(json.dumps({'error': f'{type(e).__name__}: {e}'}) + '\n')
      out.flush()


def fail(message: str) -> None:
  """Worker side: report a build failure as a JSON line and exit."""
  sys.stdout.write(json.dumps({'error': message}) + '\n')
  sys.stdout.flush()
  sys.exit(0)


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
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------
# Interleaved rounds and paired ratios.
# ----------------------------------------------------------------------------


def cpu_probe(mbytes: int = 24) -> float:
  """Effective cores right now: 2 x t(1 thread) / t(2 threads at once).

  Hashing releases the GIL, so two threads hashing at once take as long as
  one on an idle 2-core machine (2.0) and twice as long when only one core
  is effectively ours (1.0).
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
  round), `.cpu` ({contender: [items per CPU-second per round]}) and
  `.turn_s` ({contender: [seconds per turn]})."""

  def __init__(self, names):
    super().__init__({n: [] for n in names})
    self.cores: list[float] = []
    self.cpu: dict[str, list[float]] = {n: [] for n in names}
    self.turn_s: dict[str, list[float]] = {n: [] for n in names}

  def raw(self) -> dict:
    return {'rates': dict(self), 'cpu': self.cpu, 'cores': self.cores}


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


def quiet_rounds(cores: Sequence[float], threshold: float = QUIET_CORES
                 ) -> list[int]:
  """Indices of the rounds where both cores were ours throughout."""
  return [i for i, c in enumerate(cores) if c >= threshold]


def pick(xs: Sequence[float], idx: Sequence[int]) -> list[float]:
  return [xs[i] for i in idx]


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs)) if xs else float('nan')


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


def compare(rates: Rounds, comparisons, label: str = '') -> list[dict]:
  """The A / B comparisons over interleaved rounds, one dict each.

  comparisons: (a, b, what, target or None, higher_is_better); pairs with a
  missing contender are left out. Each dict has a, b, what, label, the
  medians of A and B (`rate_a`, `rate_b`), `ratio` (median of same-round
  ratios A/B), `min`/`max` of those, `quiet` (their median over the quiet
  rounds; `n_quiet` of `rounds`), `cpu` (median CPU-time ratio), target,
  higher, verdict ('reported' without a target).
  """
  quiet = quiet_rounds(rates.cores)
  out = []
  for a, b, what, target, higher in comparisons:
    if a not in rates or b not in rates:
      continue
    per_round = [x / y for x, y in zip(rates[a], rates[b])]
    ratio = median(per_round)
    cpu = median([x / y for x, y in zip(rates.cpu[a], rates.cpu[b])])
    out.append(dict(
        a=a, b=b, what=what, label=label, rate_a=median(rates[a]),
        rate_b=median(rates[b]), ratio=ratio, min=min(per_round),
        max=max(per_round),
        quiet=median(pick(per_round, quiet)) if quiet else float('nan'),
        n_quiet=len(quiet), rounds=len(rates.cores), cpu=cpu, target=target,
        higher=higher,
        verdict=(verdict(ratio, target, higher, per_round, cpu)
                 if target is not None else 'reported')))
  return out


# ----------------------------------------------------------------------------
# Machine, data, outputs.
# ----------------------------------------------------------------------------


def parse(p: argparse.ArgumentParser, quick: Mapping[str, object],
          quick_help: str) -> argparse.Namespace:
  """Adds --quick (setting `quick`'s values), --out and --json; parses."""
  p.add_argument('--quick', action='store_true', help=quick_help)
  p.add_argument('--out', default=None, help='write the markdown here')
  p.add_argument('--json', default=None, help='write raw numbers here')
  args = p.parse_args()
  if args.quick:
    for name, value in quick.items():
      setattr(args, name, value)
  return args


def parse_step_bench(p: argparse.ArgumentParser, arch: str = 'resnet18_cifar',
                     width_mult: float = 0.25, rounds: int = 6
                     ) -> argparse.Namespace:
  """The arguments of a step-ratio script (one network, rounds of steps)."""
  p.add_argument('--arch', default=arch)
  p.add_argument('--width_mult', type=float, default=width_mult)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--rounds', type=int, default=rounds)
  p.add_argument('--steps', type=int, default=2)
  return parse(p, dict(rounds=3, steps=1), '3 rounds of 1 step')


def emit(args, markdown: str, raw) -> None:
  """Prints a script's markdown section; writes it to --out and the raw
  numbers to --json (atomically), for run_all."""
  print(markdown)
  if args.out:
    files.write_text(args.out, markdown)
  if args.json:
    files.write_text(args.json, json.dumps(raw, indent=1, default=str))


def emit_parts(args, heading: str, parts) -> None:
  """Runs `parts` ({name: part(args) -> (markdown, raw), or None to skip}),
  then emits `heading`, their markdown and the wall time; raw {name: raw}."""
  t0 = time.perf_counter()
  texts, raw = [], {}
  for name, part in parts.items():
    if part is not None:
      text, raw[name] = part(args)
      texts.append(text)
  emit(args, rendering.section(heading, *texts, rendering.facts(
      {'wall time of this benchmark': f'{time.perf_counter() - t0:.0f} s'})),
       raw)
