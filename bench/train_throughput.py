r"""Train-step throughput (img/s) of wt_jax against references, same run.

  python bench/train_throughput.py            # full (~7-9 min on 2 cores)
  python bench/train_throughput.py --quick    # 3 rounds of 2 steps

For each network (default ResNet-18-CIFAR at width 0.25 and ResNet-20, batch
128, 32x32 inputs, 10 classes) these contenders run, each in its own
subprocess (so XLA flags and frameworks never mix), interleaved in rounds
(A, B, C, ... with the order rotated each round, one untimed priming turn
first), N steps per turn, timed with `block_until_ready` after the
compile/warm-up steps:

* ours: wt_jax's jitted train step, `train.make_train_step` on a 1-device
  mesh (`train.make_mesh`), `train.make_optimizer` (masked L2 weight decay +
  SGD Nesterov), float32, `models.build_model(widths.uniform(arch, w))`;
* ref: a plain Flax ResNet of the same shape written here in the form of the
  flax examples/imagenet ResNet (nn.Conv/nn.BatchNorm, a `jax.jit` train step
  with optax, flax.training.train_state, no sharding, no donation);
* torch / torch_1thread: the same network in PyTorch, channels_last, eager
  (torch.compile with --torch_compile), `torch.set_num_threads(nproc)` and
  1, forward + backward + SGD(Nesterov, weight decay) step; skipped with a
  note when torch is not installed (`pip install -e .[bench]`);
* ours_xla_default: our step with `--xla_cpu_experimental_ynn_fusion_type`
  unset (XLA's default YNN fusions) instead of wt_jax's default (off);
* ours_bf16: `build_model(..., dtype=jnp.bfloat16)`;
* pipeline: `train.local_train_batches` on the CIFAR-10 JPEGs (`folder:`
  source unzipped to /tmp, augment 'cifar', batch 128) plus the
  host-to-device put of each batch, measured after one full epoch (decode +
  cache + the first shuffle): the steady state; the next epoch's rebuild is
  timed on its own. A few batches are drained untimed before each turn, so
  the prefetch buffer filled while the other contenders ran does not count.

Every train step sees the same fixed batch of random images. Reported: the
median img/s over the rounds; for each comparison the median over rounds of
the same-round ratio, the same over the "quiet" rounds (a probe found both
cores free), and the CPU-time ratio (CPU seconds per image of each process,
which a neighbour taking a core hardly moves); and, noise-free, XLA's cost
analysis of the compiled programs (FLOPs, bytes, copies, fusions).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # pylint: disable=g-import-not-at-top,wrong-import-position
import wt_jax  # pylint: disable=g-import-not-at-top,wrong-import-position,unused-import  # before jax: wt_jax's XLA:CPU default

NUM_CLASSES = 10
RESOLUTION = 32
DEFAULT_ARCHS = 'resnet18_cifar:0.25,resnet20_cifar:1.0'
WEIGHT_DECAY = 5e-4


# ----------------------------------------------------------------------------
# Worker side: build one contender, warm it up, serve `run N`.
# ----------------------------------------------------------------------------


def _random_batch(batch_size, seed=0):
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = rng.standard_normal(
      (batch_size, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  return images, labels


def hlo_stats(compiled) -> dict:
  """Noise-free facts of a compiled step: XLA's cost analysis + op counts."""
  import re  # pylint: disable=g-import-not-at-top
  text = compiled.as_text()
  ca = compiled.cost_analysis()
  ca = ca[0] if isinstance(ca, (list, tuple)) else ca
  return dict(flops=float(ca.get('flops', 0.0)),
              bytes=float(ca.get('bytes accessed', 0.0)),
              copies=len(re.findall(r' copy\(', text)),
              convolutions=len(re.findall(r' convolution\(', text)),
              fusions=len(re.findall(r' fusion\(', text)),
              ynn_fusions=len(re.findall(r'kind=kCustom', text)))


def _train_config(batch_size):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from wt_jax import train  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dict(
      train.TRAIN_DEFAULTS, batch_size=batch_size, weight_decay=WEIGHT_DECAY,
      momentum=0.9, nesterov=True))


def build_ours(arch, width_mult, batch_size, dtype='float32', warmup=2,
               extra_loss_kind=None, loss_kind=None, ablation=False):
  """(run, info) for wt_jax's train step. Also used by morphnet/autoslim."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from wt_jax import models, train, widths as W  # pylint: disable=g-import-not-at-top,g-multiple-import
  widths = W.uniform(arch, width_mult)
  model = models.build_model(widths, NUM_CLASSES,
                             {'float32': jnp.float32,
                              'bfloat16': jnp.bfloat16}[dtype])
  tc = _train_config(batch_size)
  schedule = train.learning_rate_schedule(tc, 100_000, 390)
  tx = train.make_optimizer(tc, schedule)
  mesh = train.make_mesh(jax.devices()[:1])
  shape = (RESOLUTION, RESOLUTION, 3)
  extra_loss = loss_fn = None
  if extra_loss_kind == 'morphnet':
    from wt_jax import morphnet  # pylint: disable=g-import-not-at-top
    structure = morphnet.make_structure(widths, RESOLUTION, NUM_CLASSES)
    strength = morphnet.auto_strength(widths, RESOLUTION, NUM_CLASSES, 1.0)
    extra_loss = morphnet.make_extra_loss(structure, strength)
  if loss_kind == 'autoslim':
    from wt_jax import autoslim  # pylint: disable=g-import-not-at-top
    space = autoslim.make_space(widths, RESOLUTION, NUM_CLASSES)
    loss_fn = autoslim.make_sandwich_loss(space, num_random=2)
  names = train.metric_names(model, shape, loss_fn=loss_fn,
                             extra_loss=extra_loss, train_config=tc)
  t0 = time.perf_counter()
  state, shardings = train.init_state(model, tx, mesh, seed=0,
                                      image_shape=shape, names=names)
  step = train.make_train_step(model, tx, mesh, shardings, seed=0,
                               train_config=tc, loss_fn=loss_fn,
                               extra_loss=extra_loss)
  images, labels = _random_batch(batch_size)
  batch = train.global_batch(mesh, {'image': images, 'label': labels,
                                    'mask': np.ones(batch_size, np.float32)})
  # Compile once through lower() (the executable keeps the donation and the
  # shardings) so its HLO can be inspected without a second compile.
  jitted = step
  step = jitted.lower(state, batch).compile()
  stats = {'ours': hlo_stats(step)}
  if ablation:
    # The same step function without donation (and without the explicit
    # shardings): what donating the state costs in the compiled program.
    stats['ours, no donation'] = hlo_stats(
        jax.jit(jitted.__wrapped__).lower(state, batch).compile())
  holder = {'state': state}
  for _ in range(warmup):
    holder['state'] = step(holder['state'], batch)
  jax.block_until_ready(holder['state'])
  warm_s = time.perf_counter() - t0

  def run(n):
    t = time.perf_counter()
    s = holder['state']
    for _ in range(n):
      s = step(s, batch)
    jax.block_until_ready(s)
    holder['state'] = s
    return time.perf_counter() - t, n * batch_size

  params = sum(int(np.prod(x.shape))
               for x in jax.tree.leaves(holder['state'].params))
  return run, dict(params=params, warmup_s=warm_s,
                   xla_flags=os.environ.get('XLA_FLAGS', ''),
                   widths=widths.as_dict(), hlo=stats, step_fn=step,
                   holder=holder, batch=batch)


def _ref_module(widths, dtype, padding='SAME'):
  """The flax examples/imagenet ResNet, with the CIFAR stem, at `widths`.

  padding: nn.Conv's padding; 'SAME' as in the example (stride-2 3x3 convs
  then pad (0, 1)), or 'symmetric' for ((k//2, k//2),) * 2 as wt_jax's models.
  """
  import functools  # pylint: disable=g-import-not-at-top
  from typing import Any, Callable  # pylint: disable=g-import-not-at-top,g-multiple-import
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  ModuleDef = Any

  class ResNetBlock(nn.Module):
    filters: int
    inner: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable
    strides: tuple = (1, 1)

    @nn.compact
    def __call__(self, x):
      residual = x
      y = self.conv(self.inner, (3, 3), self.strides)(x)
      y = self.norm()(y)
      y = self.act(y)
      y = self.conv(self.filters, (3, 3))(y)
      y = self.norm(scale_init=nn.initializers.zeros_init())(y)
      if residual.shape != y.shape:
        residual = self.conv(self.filters, (1, 1), self.strides,
                             name='conv_proj')(residual)
        residual = self.norm(name='norm_proj')(residual)
      return self.act(residual + y)

  spec = widths.spec
  w = widths.as_dict()

  class ResNet(nn.Module):
    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
      def conv(features, kernel, strides=(1, 1), **kw):
        pad = ('SAME' if padding == 'SAME' else
               tuple((k // 2, k // 2) for k in kernel))
        return nn.Conv(features, kernel, strides, padding=pad,
                       use_bias=False, dtype=self.dtype, **kw)
      norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                               momentum=0.9, epsilon=1e-5, dtype=self.dtype)
      x = conv(w['stem'], (3, 3), name='conv_init')(x)  # CIFAR stem
      x = norm(name='bn_init')(x)
      x = nn.relu(x)
      for i, block_size in enumerate(spec.depth):
        for j in range(block_size):
          s = spec.strides[i] if j == 0 else 1
          x = ResNetBlock(w[f'stage{i + 1}'],
                          w[f'stage{i + 1}/block{j + 1}/conv1'],
                          strides=(s, s), conv=conv, norm=norm,
                          act=nn.relu)(x)
      x = jnp.mean(x, axis=(1, 2))
      x = nn.Dense(self.num_classes, dtype=self.dtype)(x)
      x = jnp.asarray(x, self.dtype)
      return x

  return ResNet(num_classes=NUM_CLASSES, dtype=dtype)


def build_ref(arch, width_mult, batch_size, warmup=2, padding='SAME'):
  """(run, info) for the reference Flax ResNet (flax examples/imagenet)."""
  from typing import Any  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top
  from wt_jax import widths as W  # pylint: disable=g-import-not-at-top
  widths = W.uniform(arch, width_mult)
  if widths.spec.block != 'basic':
    raise ValueError('the reference ResNet has BasicBlocks only')
  model = _ref_module(widths, jnp.float32, padding)

  class TrainState(train_state.TrainState):
    batch_stats: Any

  # examples/imagenet: create_learning_rate_fn (warm-up + cosine).
  base_lr = 0.1 * batch_size / 256.0
  warmup_fn = optax.linear_schedule(0.0, base_lr, 390)
  cosine_fn = optax.cosine_decay_schedule(base_lr, 100_000 - 390)
  lr_fn = optax.join_schedules([warmup_fn, cosine_fn], [390])
  tx = optax.sgd(learning_rate=lr_fn, momentum=0.9, nesterov=True)
  t0 = time.perf_counter()
  variables = jax.jit(lambda k: model.init(
      k, jnp.ones((1, RESOLUTION, RESOLUTION, 3)), train=False))(
          jax.random.PRNGKey(0))
  state = TrainState.create(apply_fn=model.apply, params=variables['params'],
                            tx=tx, batch_stats=variables['batch_stats'])

  def cross_entropy_loss(logits, labels):
    one_hot = jax.nn.one_hot(labels, num_classes=NUM_CLASSES)
    return jnp.mean(optax.softmax_cross_entropy(logits=logits,
                                                labels=one_hot))

  def compute_metrics(logits, labels):
    return {'loss': cross_entropy_loss(logits, labels),
            'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)}

  def train_step(state, batch):
    def loss_fn(params):
      logits, new_model_state = state.apply_fn(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['image'], mutable=['batch_stats'])
      loss = cross_entropy_loss(logits, batch['label'])
      weight_l2 = sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(params)
                      if x.ndim > 1)
      loss = loss + WEIGHT_DECAY * 0.5 * weight_l2
      return loss, (new_model_state, logits)

    (_, (new_model_state, logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    metrics = compute_metrics(logits, batch['label'])
    new_state = state.apply_gradients(
        grads=grads, batch_stats=new_model_state['batch_stats'])
    return new_state, metrics

  images, labels = _random_batch(batch_size)
  batch = jax.device_put({'image': images, 'label': labels})
  step = jax.jit(train_step).lower(state, batch).compile()
  holder = {'state': state}
  for _ in range(warmup):
    holder['state'], _ = step(holder['state'], batch)
  jax.block_until_ready(holder['state'])
  warm_s = time.perf_counter() - t0

  def run(n):
    t = time.perf_counter()
    s = holder['state']
    for _ in range(n):
      s, metrics = step(s, batch)
    jax.block_until_ready((s, metrics))
    holder['state'] = s
    return time.perf_counter() - t, n * batch_size

  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  return run, dict(params=params, warmup_s=warm_s,
                   xla_flags=os.environ.get('XLA_FLAGS', ''),
                   hlo={'ref': hlo_stats(step)}, step_fn=step,
                   holder=holder, batch=batch)


def _torch_module(widths):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Block(nn.Module):

    def __init__(self, cin, inner, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, inner, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(inner, momentum=0.1, eps=1e-5)
      self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5)
      self.shortcut = None
      if stride != 1 or cin != cout:
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      s = x if self.shortcut is None else self.shortcut(x)
      return torch.relu(s + y)

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      spec, w = widths.spec, widths.as_dict()
      self.stem = nn.Sequential(nn.Conv2d(3, w['stem'], 3, 1, 1, bias=False),
                                nn.BatchNorm2d(w['stem']), nn.ReLU())
      blocks, cin = [], w['stem']
      for i, n in enumerate(spec.depth):
        for j in range(n):
          stride = spec.strides[i] if j == 0 else 1
          cout = w[f'stage{i + 1}']
          blocks.append(Block(cin, w[f'stage{i + 1}/block{j + 1}/conv1'],
                              cout, stride))
          cin = cout
      self.blocks = nn.Sequential(*blocks)
      self.fc = nn.Linear(cin, NUM_CLASSES)

    def forward(self, x):
      x = self.blocks(self.stem(x))
      return self.fc(x.mean((2, 3)))

  return Net()


def build_torch(arch, width_mult, batch_size, compile_model=False, warmup=3,
                threads=0):
  """(run, info) for the PyTorch twin (channels_last, SGD Nesterov)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    C.fail('torch is not installed (pip install -e .[bench], or '
           'pip install torch==2.13.0)')
  import numpy as np  # pylint: disable=g-import-not-at-top
  from wt_jax import widths as W  # pylint: disable=g-import-not-at-top
  threads = threads or os.cpu_count() or 1
  torch.set_num_threads(threads)
  widths = W.uniform(arch, width_mult)
  model = _torch_module(widths).to(memory_format=torch.channels_last)
  model.train()
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': WEIGHT_DECAY},
                         {'params': no_decay, 'weight_decay': 0.0}],
                        lr=0.05, momentum=0.9, nesterov=True)
  images, labels = _random_batch(batch_size)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last)
  y = torch.from_numpy(labels).long()
  loss_fn = torch.nn.functional.cross_entropy

  def one_step(x, y):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss

  fwd = model
  if compile_model:
    fwd = torch.compile(model)

    def one_step(x, y):  # pylint: disable=function-redefined
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(fwd(x), y)
      loss.backward()
      opt.step()
      return loss
  t0 = time.perf_counter()
  for _ in range(warmup):
    one_step(x, y)
  warm_s = time.perf_counter() - t0

  def run(n):
    t = time.perf_counter()
    for _ in range(n):
      loss = one_step(x, y)
    float(loss.detach())
    return time.perf_counter() - t, n * batch_size

  params = sum(int(np.prod(p.shape)) for p in model.parameters())
  return run, dict(params=params, warmup_s=warm_s, threads=threads,
                   torch=torch.__version__, compiled=bool(compile_model))


def build_pipeline(batch_size, drain=16, warm_epochs=1):
  """(run, info) for the CIFAR-10 JPEG input pipeline of training."""
  import jax  # pylint: disable=g-import-not-at-top
  from wt_jax import defaults
  from wt_jax import data, train  # pylint: disable=g-import-not-at-top,g-multiple-import
  dc = defaults.get_config().data
  dc.source = 'folder:' + C.cifar_folder()
  dc.augment = 'cifar'
  dc.resolution = 0
  t0 = time.perf_counter()
  info = data.dataset_info(dc)
  mesh = train.make_mesh(jax.devices()[:1])
  it = train.local_train_batches(dc, batch_size=batch_size, seed=0,
                                 start_step=0, process_index=0,
                                 process_count=1)
  per_epoch = train.steps_per_epoch(info.num_examples['train'], batch_size)
  first = None
  for i in range(per_epoch * warm_epochs):
    jax.block_until_ready(train.global_batch(mesh, next(it)))
    if i == 0:
      first = time.perf_counter() - t0
  warm_s = time.perf_counter() - t0
  # The epoch boundary: `local_train_batches` builds each epoch's dataset
  # (`make_dataset(num_epochs=1)`) when the previous one ends; time the
  # first batch of the next epoch, which training waits for.
  t = time.perf_counter()
  jax.block_until_ready(train.global_batch(mesh, next(it)))
  boundary_s = time.perf_counter() - t

  def run(n):
    for _ in range(drain):
      next(it)
    t = time.perf_counter()
    for _ in range(n):
      jax.block_until_ready(train.global_batch(mesh, next(it)))
    return time.perf_counter() - t, n * batch_size

  return run, dict(warmup_s=warm_s, first_batch_s=first,
                   epoch_boundary_s=boundary_s,
                   num_train=info.num_examples['train'],
                   steps_per_epoch=per_epoch, resolution=info.resolution)


def worker_main(args):
  kind = args.worker
  try:
    if kind == 'ours':
      run, info = build_ours(args.arch, args.width_mult, args.batch,
                             dtype=args.dtype, ablation=args.ablation)
      info = {k: v for k, v in info.items()
              if k not in ('step_fn', 'holder', 'batch')}
    elif kind == 'ref':
      run, info = build_ref(args.arch, args.width_mult, args.batch)
      info = {k: v for k, v in info.items()
              if k not in ('step_fn', 'holder', 'batch')}
    elif kind == 'torch':
      run, info = build_torch(args.arch, args.width_mult, args.batch,
                              compile_model=args.torch_compile,
                              threads=args.torch_threads)
    elif kind == 'pipeline':
      run, info = build_pipeline(args.batch)
    else:
      raise ValueError(kind)
  except Exception as e:  # pylint: disable=broad-except
    C.fail(f'{type(e).__name__}: {e}')
  C.serve(run, info)


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def _log(msg):
  print(f'[train_throughput {time.strftime("%H:%M:%S")}] {msg}',
        file=sys.stderr, flush=True)


def _worker(name, argv, ynn='off'):
  return C.Worker(name, [os.path.abspath(__file__), '--worker'] + argv,
                  C.xla_env(ynn))


def bench_arch(arch, width_mult, args, pipeline):
  """Interleaved rounds of every contender for one network."""
  common = ['--arch', arch, '--width_mult', str(width_mult),
            '--batch', str(args.batch)]
  specs = {'ours': (['ours', '--ablation'] + common, 'off'),
           'ref': (['ref'] + common, 'off')}
  notes = []
  if not args.no_torch:
    if C.torch_version() is None:
      notes.append('PyTorch rows skipped: torch is not installed '
                   '(`pip install -e .[bench]` or `pip install torch==2.13.0`).')
    else:
      compile_flag = ['--torch_compile'] if args.torch_compile else []
      specs['torch'] = (['torch'] + common + compile_flag, 'off')
      if not args.no_torch_1thread:
        specs['torch_1thread'] = (['torch'] + common + compile_flag +
                                  ['--torch_threads', '1'], 'off')
  if not args.no_ynn:
    specs['ours_xla_default'] = (['ours'] + common, 'default')
  if not args.no_bf16:
    specs['ours_bf16'] = (['ours'] + common + ['--dtype', 'bfloat16'], 'off')
  workers = {}
  try:
    for name, (argv, ynn) in specs.items():
      workers[name] = _worker(name, argv, ynn)
    for name, w in list(workers.items()):
      try:
        w.wait_ready()
        _log(f'{arch}: {name} ready ({w.info.get("warmup_s", 0):.1f} s)')
      except RuntimeError as e:
        notes.append(f'{name} skipped: {e}')
        del workers[name]
    contenders = {n: (lambda w=w: _run(w, args.steps)) for n, w in
                  workers.items()}
    if pipeline is not None:
      contenders['pipeline'] = lambda: _run(pipeline, args.pipeline_batches)
    rates = C.interleave(contenders, args.rounds,
                         log=lambda m: _log(f'{arch}: {m}'))
    info = {n: w.info for n, w in workers.items()}
  finally:
    for w in workers.values():
      w.close()
  return rates, info, notes


def _run(worker, n):
  return worker.run(n)


CONTENDERS = {
    'ours': 'ours: wt_jax `train.make_train_step`, float32, YNN off',
    'ref': 'reference Flax ResNet (flax examples/imagenet form), same flags',
    'torch': 'PyTorch eager, channels_last, threads = nproc',
    'torch_1thread': 'PyTorch eager, channels_last, 1 thread',
    'ours_xla_default': 'ours with XLA:CPU default flags (YNN fusions on)',
    'ours_bf16': 'ours with bfloat16 compute',
    'pipeline': 'input pipeline: CIFAR-10 JPEGs, augment cifar (+ device put)',
}

COMPARISONS = (
    # (A, B, what, target or None, higher is better)
    ('ours', 'ref', 'ours / reference Flax', 1.0, True),
    ('ours', 'torch', 'ours / PyTorch (nproc threads)', None, True),
    ('ours', 'torch_1thread', 'ours / PyTorch (1 thread)', None, True),
    ('ours', 'ours_xla_default', 'YNN off (wt_jax default) / XLA default',
     None, True),
    ('ours_bf16', 'ours', 'bfloat16 / float32', None, True),
    ('pipeline', 'ours', 'input pipeline / train step', 2.0, True),
)


def render(results, args, notes, pipeline_info):
  lines = [f'Batch {args.batch}, {RESOLUTION}x{RESOLUTION} inputs, '
           f'{NUM_CLASSES} classes, one fixed batch of random images; '
           f'{args.rounds} interleaved rounds (order rotated each round) of '
           f'{args.steps} steps per contender ({args.pipeline_batches} '
           'batches for the input pipeline), compile and warm-up excluded; '
           'img/s = median over rounds. A ratio is the median over rounds of '
           'the same-round ratio A/B; "quiet rounds" are the rounds in which '
           'a probe before and after every turn found both cores free '
           '(effective cores >= 1.7; see the notes).', '']
  rows = []
  for label, (rates, _) in results.items():
    quiet = C.quiet_rounds(rates.cores)
    for name in rates:
      r = rates[name]
      rows.append([label, name, CONTENDERS.get(name, name), C.median(r),
                   C.spread(r),
                   C.median(C.pick(r, quiet)) if quiet else '-',
                   1000 * args.batch / C.median(r),
                   1000 * args.batch / C.median(rates.cpu[name])])
  lines.append(C.table(['network', 'contender', 'what', 'img/s',
                        'img/s min-max', 'img/s quiet rounds',
                        'ms / batch', 'CPU ms / batch'], rows))
  lines.append('')
  all_rows, readings, header = [], [], None
  for label, (rates, _) in results.items():
    header, rows, rd = C.comparison_table(rates, COMPARISONS,
                                          label_col='network', label=label)
    all_rows += rows
    readings += rd
  if header:
    lines.append(C.table(header, all_rows))
    lines.append('')
  hrows = []
  for label, (_, info) in results.items():
    for name, i in info.items():
      for prog, h in i.get('hlo', {}).items():
        hrows.append([label, name if prog == 'ours' else prog,
                      f'{h["flops"] / 1e9:.3f}', f'{h["bytes"] / 1e6:.1f}',
                      h['copies'], h['fusions'], h.get('ynn_fusions', 0),
                      h['convolutions']])
  if hrows:
    lines.append('Compiled programs (XLA cost analysis of the optimized HLO: '
                 'noise-free; "ours, no donation" is the same step function '
                 'jitted without `donate_argnums` and shardings):')
    lines.append('')
    lines.append(C.table(['network', 'program', 'GFLOP / step',
                          'MB accessed / step', 'copy ops', 'fusions',
                          'of which YNN (kCustom)', 'convolution ops'],
                         hrows))
    lines.append('')
  lines.append('Effective cores per round (probe minimum): ' + '; '.join(
      f'{label}: ' + ' '.join(f'{c:.2f}' for c in rates.cores)
      for label, (rates, _) in results.items()) + '.')
  lines.append('')
  for label, (_, info) in results.items():
    for name, i in info.items():
      extra = ', '.join(f'{k}={v}' for k, v in i.items()
                        if k in ('params', 'threads', 'compiled', 'torch'))
      flags = (f'; XLA_FLAGS=`{i["xla_flags"]}`' if 'xla_flags' in i else '')
      lines.append(f'- {label} / {name}: build + warm-up '
                   f'{i.get("warmup_s", 0):.1f} s; {extra}{flags}')
  if pipeline_info:
    lines.append(
        f'- input pipeline: {pipeline_info["num_train"]} train images '
        f'({pipeline_info["steps_per_epoch"]} batches per epoch); first '
        f'batch after {pipeline_info["first_batch_s"]:.1f} s (the JPEGs are '
        'decoded once into the in-memory cache), first epoch done after '
        f'{pipeline_info["warmup_s"]:.1f} s (excluded from the timing); the '
        'next epoch\'s first batch (the per-epoch `make_dataset` rebuild of '
        '`train.local_train_batches`, which training waits for) took '
        f'{pipeline_info["epoch_boundary_s"]:.2f} s.')
    for label, (rates, _) in results.items():
      if 'pipeline' not in rates or 'ours' not in rates:
        continue
      n = pipeline_info['steps_per_epoch'] * args.batch
      steady = C.median(rates['pipeline'])
      amortized = n / (pipeline_info['epoch_boundary_s'] + n / steady)
      lines.append(
          f'- {label}: with that rebuild amortized over the epoch the '
          f'pipeline delivers {amortized:,.0f} img/s, '
          f'{amortized / C.median(rates["ours"]):.1f}x the train step.')
  lines += [f'- {n}' for n in notes]
  return '\n'.join(lines).rstrip() + '\n', readings


def reading(readings, results):
  """Plain-words reading of each ratio against its target."""
  out = []
  for r in readings:
    q = (f', {r["quiet"]:.2f} over the {r["n_quiet"]} quiet rounds'
         if r['n_quiet'] else ', no quiet round')
    base = (f'- {r["label"]}, {r["what"]}: {r["ratio"]:.2f} '
            f'(rounds {r["min"]:.2f}-{r["max"]:.2f}{q}; CPU-time ratio '
            f'{r["cpu"]:.2f})')
    key = (r['a'], r['b'])
    if key == ('ours', 'ref'):
      hlo = {}
      for name in ('ours', 'ref'):
        hlo.update(results[r['label']][1].get(name, {}).get('hlo', {}))
      base += f'; {r["verdict"]}.'
      if 'ours' in hlo and 'ref' in hlo:
        o, f = hlo['ours'], hlo['ref']
        nd = hlo.get('ours, no donation')
        base += (f' The compiled programs do the same work: '
                 f'{o["flops"] / 1e9:.2f} vs {f["flops"] / 1e9:.2f} GFLOP per '
                 f'step, {o["bytes"] / 1e6:.1f} vs {f["bytes"] / 1e6:.1f} MB '
                 f'accessed ({100 * (o["bytes"] / f["bytes"] - 1):+.2f}%), '
                 f'{o["copies"]} vs {f["copies"]} copy ops')
        if nd:
          base += (f'; without donation ours has {nd["copies"]} copies and '
                   f'{nd["bytes"] / 1e6:.1f} MB, so the extra copies are '
                   'parameter-sized copies that XLA inserts for the donated '
                   '(in-place) state, about '
                   f'{(o["bytes"] - nd["bytes"]) / 1e6:.1f} MB per step')
        base += ('. A ratio within ~5% of 1 either way is therefore noise '
                 '(and which process got which cores), not a cost or a gain '
                 'of train.py/models.py; run in one process, the two steps '
                 'measure the same.')
    elif key[1] == 'torch':
      base += ('; no target. PyTorch eager (oneDNN convolutions) with nproc '
               'OpenMP threads spin-waits and collapses whenever a neighbour '
               'takes a core, so this ratio swings from round to round and '
               'its median depends on how many rounds were noisy; read it '
               'with the 1-thread row.')
    elif key[1] == 'torch_1thread':
      base += ('; no target. Single-threaded PyTorch does not collapse under '
               'the noise, and its CPU-time ratio is the cleanest '
               'framework comparison: PyTorch\'s oneDNN kernels need about '
               f'{1 / r["cpu"]:.1f}x less CPU time per image than our XLA:CPU '
               'step.')
    elif key == ('ours', 'ours_xla_default'):
      if r['ratio'] > 1.05:
        what = (f'wt_jax\'s default (YNN off) is {r["ratio"]:.2f}x faster '
                'here')
      elif r['ratio'] < 0.95:
        what = (f'XLA\'s default (YNN on) is {1 / r["ratio"]:.2f}x faster '
                'here')
      else:
        what = 'no clear difference here'
      base += (f'; {what}. The YNN setting is active in the XLA-default '
               'process (its compiled step has the YNN custom fusions '
               'counted in the table above); wt_jax/__init__.py quotes '
               '1.6-2.1x for turning them off.')
    elif key == ('ours_bf16', 'ours'):
      flags = C.cpu_flags()
      base += ('; speed only (accuracy not compared); bfloat16 compute with '
               'float32 parameters, on a CPU ' +
               ('with' if 'avx512_bf16' in flags else 'without') +
               ' AVX512-BF16 instructions.')
    elif key == ('pipeline', 'ours'):
      base += (f'; {r["verdict"]}: the input pipeline alone is that many '
               'times faster than the train step, and it needs '
               f'{100 / r["cpu"]:.1f}% of the train step\'s CPU time per '
               'image, which is what it takes from the step when both share '
               'the 2 cores in training.')
    out.append(base)
  return '\n'.join(out) + '\n'


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
  p.add_argument('--arch', default='resnet18_cifar', help=argparse.SUPPRESS)
  p.add_argument('--width_mult', type=float, default=0.25,
                 help=argparse.SUPPRESS)
  p.add_argument('--dtype', default='float32', help=argparse.SUPPRESS)
  p.add_argument('--ablation', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--archs', default=DEFAULT_ARCHS,
                 help='networks, arch:width_mult,... (default %(default)s)')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--rounds', type=int, default=6)
  p.add_argument('--steps', type=int, default=3,
                 help='train steps per contender per round')
  p.add_argument('--pipeline_batches', type=int, default=100)
  p.add_argument('--quick', action='store_true',
                 help='3 rounds of 2 steps, 50 pipeline batches')
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--no_torch_1thread', action='store_true')
  p.add_argument('--no_ynn', action='store_true')
  p.add_argument('--no_bf16', action='store_true')
  p.add_argument('--no_pipeline', action='store_true')
  p.add_argument('--torch_threads', type=int, default=0,
                 help='torch threads (default: the number of cores)')
  p.add_argument('--torch_compile', action='store_true',
                 help='torch.compile the PyTorch model (off by default)')
  p.add_argument('--out', default=None, help='write the markdown here')
  p.add_argument('--json', default=None, help='write raw numbers here')
  args = p.parse_args()
  if args.worker:
    return worker_main(args)
  if args.quick:
    args.rounds, args.steps, args.pipeline_batches = 3, 2, 50

  notes, results, raw = [], {}, {}
  pipeline = None
  pipeline_info = None
  t_start = time.perf_counter()
  try:
    if not args.no_pipeline:
      pipeline = _worker('pipeline', ['pipeline', '--batch', str(args.batch)])
    for spec in args.archs.split(','):
      arch, wm = spec.split(':')
      label = f'{arch} w{float(wm):g}'
      if pipeline is not None and pipeline_info is None:
        try:
          pipeline_info = pipeline.wait_ready()
          _log(f'pipeline ready ({pipeline_info["warmup_s"]:.1f} s)')
        except RuntimeError as e:
          notes.append(f'input pipeline skipped: {e}')
          pipeline = None
      rates, info, arch_notes = bench_arch(arch, float(wm), args, pipeline)
      notes += [f'{label}: {n}' for n in arch_notes]
      results[label] = (rates, info)
      raw[label] = {'rates': dict(rates), 'cpu': rates.cpu,
                    'cores': rates.cores, 'info': info}
  finally:
    if pipeline is not None:
      pipeline.close()
  text, readings = render(results, args, notes, pipeline_info)
  title = '## Train-step throughput (`bench/train_throughput.py`)\n\n'
  body = (title + text + '\nReading:\n\n' + reading(readings, results) +
          f'\nWall time of this benchmark: '
          f'{time.perf_counter() - t_start:.0f} s.\n')
  print(body)
  C.write_fragment(args.out, body)
  if args.json:
    C.write_fragment(args.json, json.dumps(
        {'raw': raw, 'readings': readings, 'notes': notes,
         'pipeline': pipeline_info, 'args': vars(args)}, indent=1,
        default=str))


if __name__ == '__main__':
  main()
