r"""The contenders: what the benchmarks time, and the worker program for them.

Each builder returns `(run, info)`: `run(n)` does n steps and returns
(seconds, images), after the build, compile and warm-up that `info` reports
(`warmup_s`, parameter count, compiled-program facts `hlo`, the analytic
FLOPs of a step `analytic` for MFU, ...).

* `build_ours`: wt_jax's train step, `train.TrainStep` on a 1-device mesh
  (masked L2 weight decay + SGD Nesterov, `config.train`'s recipe), float32
  or bfloat16, `models.build_model(widths.uniform(arch, w))`; optionally
  with MorphNet's regularizer (`extra_loss`) or AutoSlim's sandwich loss
  (`loss_fn`).
* `build_ref`: a plain Flax ResNet of the same shape in the form of the flax
  examples/imagenet ResNet (`references.flax_resnet`: nn.Conv/nn.BatchNorm;
  a `jax.jit` train step with optax, flax.training.train_state, no
  sharding, no donation), float32 or bfloat16; its compiled program does
  the same FLOPs as ours.
* `build_torch`: the same network in PyTorch (`references.torch_resnet`),
  channels_last, eager (torch.compile optional), forward + backward +
  SGD(Nesterov, weight decay).
* `build_pipeline`: `train.local_train_batches` on the CIFAR-10 JPEGs plus
  the host-to-device put of each batch, after one full epoch (decode, cache,
  first shuffle); the next epoch's rebuild is timed on its own.

Every train step sees the same fixed batch of random images; the CIFAR-10
JPEGs are unzipped to /tmp once (`cifar_folder`). Each builder imports its
framework itself, so a worker process loads only what it
measures (the PyTorch worker never imports jax or TensorFlow).

  python bench/contenders.py KIND [--arch A --width_mult W --batch B ...]

serves one contender (KIND: ours, ref, torch, pipeline) to a
`harness.Worker`.
"""
from __future__ import annotations

import argparse
import os
import re
import time
import zipfile

import harness  # first: wt_jax's XLA:CPU default before jax
import numpy as np  # pylint: disable=g-bad-import-order
import references

# The inputs of every contender; bench/accelerator_check.sh sets 224 / 1000
# (ImageNet-sized steps) through the environment, which the workers inherit.
NUM_CLASSES = references.NUM_CLASSES
RESOLUTION = int(os.environ.get('WT_BENCH_RESOLUTION', 32))
WEIGHT_DECAY = 5e-4
DESCRIPTIONS = {
    'ours': 'ours: wt_jax `train.TrainStep`, float32, YNN off',
    'ref': 'reference Flax ResNet (flax examples/imagenet form), same flags',
    'torch': 'PyTorch eager, channels_last, threads = nproc',
    'torch_1thread': 'PyTorch eager, channels_last, 1 thread',
    'ours_xla_default': 'ours with XLA:CPU default flags (YNN fusions on)',
    'ours_bf16': 'ours with bfloat16 compute',
    'ref_bf16': 'reference Flax ResNet with bfloat16 compute',
    'pipeline': 'input pipeline: CIFAR-10 JPEGs, augment cifar (+ device put)',
}
CIFAR_ZIP = os.environ.get('WT_BENCH_CIFAR_ZIP',
                           os.path.join(os.path.dirname(harness.REPO), 'shared',
                                        'data', 'cifar10_jpeg.zip'))
CIFAR_DIR = os.environ.get('WT_BENCH_CIFAR_DIR', '/tmp/cifar10_jpeg')


def cifar_folder(path: str = CIFAR_DIR) -> str:
  """The CIFAR-10 JPEGs unzipped under `path` (done once; never in the repo)."""
  marker = os.path.join(path, '.complete')
  if os.path.exists(marker):
    return path
  if os.path.abspath(path).startswith(harness.REPO + os.sep):
    raise ValueError(f'refusing to unzip the data set into the repo: {path}')
  if not os.path.exists(CIFAR_ZIP):
    raise FileNotFoundError(f'CIFAR-10 JPEG zip not found: {CIFAR_ZIP} (set '
                            'WT_BENCH_CIFAR_ZIP)')
  with zipfile.ZipFile(CIFAR_ZIP) as z:
    z.extractall(path)
  with open(marker, 'w') as f:
    f.write('ok\n')
  return path


def random_batch(batch_size, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.standard_normal(
      (batch_size, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
  return images, labels


def analytic_flops(arch, width_mult, batch_size) -> dict:
  """The analytic work of one train step: 6 x MACs x batch.

  MACs per example from `wt_jax.cost.macs` (every conv and the FC layer at
  RESOLUTION, NUM_CLASSES); a train step is the forward pass plus the
  backward pass's two convolutions per layer (`cost.TRAIN_MACS_FACTOR`, 3)
  at 2 FLOPs per MAC. This is what MFU is computed from: XLA's
  `cost_analysis()['flops']` is reported beside it, but on GPUs it leaves
  out the convolutions XLA hands to cuDNN (about 1% of the real work of a
  ResNet-18 224 step on an H200).
  """
  from wt_jax.nets import cost  # pylint: disable=g-import-not-at-top
  from wt_jax.nets import widths as W  # pylint: disable=g-import-not-at-top
  macs = cost.macs(W.uniform(arch, width_mult), RESOLUTION, NUM_CLASSES)
  return dict(macs_per_example=macs,
              flops_per_step=2 * cost.TRAIN_MACS_FACTOR * macs * batch_size)


def hlo_stats(compiled) -> dict:
  """Noise-free facts of a compiled step: XLA's cost analysis + op counts."""
  text = compiled.as_text()
  ca = compiled.cost_analysis()
  ca = ca[0] if isinstance(ca, (list, tuple)) else ca
  return dict(flops=float(ca.get('flops', 0.0)),
              bytes=float(ca.get('bytes accessed', 0.0)),
              copies=len(re.findall(r' copy\(', text)),
              convolutions=len(re.findall(r' convolution\(', text)),
              fusions=len(re.findall(r' fusion\(', text)),
              ynn_fusions=len(re.findall(r'kind=kCustom', text)))


def _jax_runner(step, state, batch, batch_size, warmup, returns_metrics=False):
  """`run(n)` for a jitted `step(state, batch)`, warmed up `warmup` steps."""
  import jax  # pylint: disable=g-import-not-at-top
  holder = {'state': state}

  def run(n):
    t = time.perf_counter()
    s, out = holder['state'], None
    for _ in range(n):
      out = step(s, batch)
      s = out[0] if returns_metrics else out
    jax.block_until_ready(out)
    holder['state'] = s
    return time.perf_counter() - t, n * batch_size

  run(warmup)
  return run, holder


def _param_count(params) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _hooks(widths, extra_loss_kind, loss_kind):
  """(extra_loss, loss_fn) of MorphNet / AutoSlim, or None."""
  extra_loss = loss_fn = None
  if extra_loss_kind == 'morphnet':
    from wt_jax.optimizers import morphnet  # pylint: disable=g-import-not-at-top
    structure = morphnet.make_structure(widths, RESOLUTION, NUM_CLASSES)
    strength = morphnet.auto_strength(structure, 1.0)
    extra_loss = morphnet.make_extra_loss(structure, strength)
  if loss_kind == 'autoslim':
    from wt_jax.optimizers import autoslim  # pylint: disable=g-import-not-at-top
    space = autoslim.make_space(widths, RESOLUTION, NUM_CLASSES)
    loss_fn = autoslim.make_sandwich_loss(space, num_random=2)
  return extra_loss, loss_fn


def build_ours(arch, width_mult, batch_size, dtype='float32', warmup=2,
               extra_loss_kind=None, loss_kind=None, ablation=False):
  """(run, info) for wt_jax's train step (`train.TrainStep`)."""
  import jax  # pylint: disable=g-import-not-at-top
  # pylint: disable=g-import-not-at-top
  from wt_jax import defaults
  from wt_jax.nets import models
  from wt_jax import train
  from wt_jax.nets import widths as W
  # pylint: enable=g-import-not-at-top
  widths = W.uniform(arch, width_mult)
  tc = defaults.get_config().train
  tc.update(batch_size=batch_size, weight_decay=WEIGHT_DECAY, momentum=0.9,
            nesterov=True)
  mesh = train.make_mesh(jax.devices()[:1])
  extra_loss, loss_fn = _hooks(widths, extra_loss_kind, loss_kind)
  t0 = time.perf_counter()
  step = train.TrainStep(
      models.build_model(widths, NUM_CLASSES, models.DTYPES[dtype]),
      tc, mesh, seed=0, image_shape=(RESOLUTION, RESOLUTION, 3),
      total_steps=100_000, steps_per_epoch=390, loss_fn=loss_fn,
      extra_loss=extra_loss)
  state = step.init()
  images, labels = random_batch(batch_size)
  batch = train.global_batch(mesh, {'image': images, 'label': labels,
                                    'mask': np.ones(batch_size, np.float32)})
  # Compile once through lower() (the executable keeps the donation and the
  # shardings) so its HLO can be inspected without a second compile.
  compiled = step.jitted.lower(state, batch, None).compile()
  stats = {'ours': hlo_stats(compiled)}
  if ablation:
    # The same step function without donation (and without the explicit
    # shardings): what donating the state costs in the compiled program.
    stats['ours, no donation'] = hlo_stats(
        jax.jit(step.update).lower(state, batch).compile())
  # The step's third argument: the training split on the devices (None:
  # the batch holds the images), as it was lowered.
  run, holder = _jax_runner(lambda s, b: compiled(s, b, None), state, batch,
                            batch_size, warmup)
  return run, dict(params=_param_count(holder['state'].params),
                   warmup_s=time.perf_counter() - t0,
                   xla_flags=os.environ.get('XLA_FLAGS', ''),
                   widths=widths.as_dict(), hlo=stats,
                   analytic=analytic_flops(arch, width_mult, batch_size))


def _ref_train_step(state, batch):
  """examples/imagenet's train_step, with the L2 weight decay of kernels."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  def cross_entropy_loss(logits, labels):
    one_hot = jax.nn.one_hot(labels, num_classes=NUM_CLASSES)
    return jnp.mean(optax.softmax_cross_entropy(logits=logits,
                                                labels=one_hot))

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
  metrics = {'loss': cross_entropy_loss(logits, batch['label']),
             'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label'])}
  new_state = state.apply_gradients(
      grads=grads, batch_stats=new_model_state['batch_stats'])
  return new_state, metrics


def build_ref(arch, width_mult, batch_size, dtype='float32', warmup=2,
              padding='SAME'):
  """(run, info) for the reference Flax ResNet (flax examples/imagenet)."""
  from typing import Any  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from wt_jax.nets import widths as W  # pylint: disable=g-import-not-at-top
  widths = W.uniform(arch, width_mult)
  if widths.spec.net.family.block != 'basic':
    raise ValueError('the reference ResNet has BasicBlocks only')
  model = references.flax_resnet(
      widths, {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype],
      padding)

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
  images, labels = random_batch(batch_size)
  batch = jax.device_put({'image': images, 'label': labels})
  step = jax.jit(_ref_train_step).lower(state, batch).compile()
  run, _ = _jax_runner(step, state, batch, batch_size, warmup,
                       returns_metrics=True)
  return run, dict(params=_param_count(state.params),
                   warmup_s=time.perf_counter() - t0,
                   xla_flags=os.environ.get('XLA_FLAGS', ''),
                   hlo={'ref': hlo_stats(step)},
                   analytic=analytic_flops(arch, width_mult, batch_size))


def build_torch(arch, width_mult, batch_size, compile_model=False, warmup=3,
                threads=0):
  """(run, info) for the PyTorch twin (channels_last, SGD Nesterov)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    harness.fail('torch is not installed (pip install -e .[bench], or '
                 'pip install torch==2.13.0)')
  from wt_jax.nets import widths as W  # pylint: disable=g-import-not-at-top
  threads = threads or os.cpu_count() or 1
  torch.set_num_threads(threads)
  model = references.torch_resnet(W.uniform(arch, width_mult)).to(
      memory_format=torch.channels_last)
  model.train()
  decay = [p for p in model.parameters() if p.ndim > 1]
  no_decay = [p for p in model.parameters() if p.ndim <= 1]
  opt = torch.optim.SGD([{'params': decay, 'weight_decay': WEIGHT_DECAY},
                         {'params': no_decay, 'weight_decay': 0.0}],
                        lr=0.05, momentum=0.9, nesterov=True)
  images, labels = random_batch(batch_size)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(
      memory_format=torch.channels_last)
  y = torch.from_numpy(labels).long()
  fwd = torch.compile(model) if compile_model else model

  def one_step(x, y):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(fwd(x), y)
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
  # pylint: disable=g-import-not-at-top
  from wt_jax import data
  from wt_jax import defaults
  from wt_jax import train
  # pylint: enable=g-import-not-at-top
  dc = defaults.get_config().data
  dc.source = 'folder:' + cifar_folder()
  dc.augment = 'cifar'
  dc.resolution = 0
  if RESOLUTION != 32:  # ImageNet-style: decode every JPEG each epoch,
    # inception crop + flip at RESOLUTION (5% of the images: 2,250)
    dc.update(resolution=RESOLUTION, augment='imagenet', cache=False,
              sample_fraction=0.05)
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


def against_plain(name, arch, width_mult, batch, steps, rounds, log,
                  **hooks):
  """(rounds, plain step's hlo, hooked step's hlo): `build_ours` plain and
  with `hooks` (extra_loss_kind / loss_kind), both in this process,
  interleaved (`harness.interleave`) as 'plain' and `name`."""
  t0 = time.perf_counter()
  plain_run, plain_info = build_ours(arch, width_mult, batch)
  run, info = build_ours(arch, width_mult, batch, **hooks)
  log(f'compiled both steps in {time.perf_counter() - t0:.0f} s')
  rates = harness.interleave({'plain': harness.in_process(plain_run, steps),
                              name: harness.in_process(run, steps)},
                             rounds, log=log)
  return rates, plain_info['hlo']['ours'], info['hlo']['ours']


def worker_argv(kind: str, *args: str) -> list[str]:
  """The command line of a `harness.Worker` serving contender `kind`."""
  return [os.path.abspath(__file__), kind, *args]


def _build(args):
  if args.kind == 'ours':
    return build_ours(args.arch, args.width_mult, args.batch,
                      dtype=args.dtype, ablation=args.ablation)
  if args.kind == 'ref':
    return build_ref(args.arch, args.width_mult, args.batch,
                     dtype=args.dtype)
  if args.kind == 'torch':
    return build_torch(args.arch, args.width_mult, args.batch,
                       compile_model=args.torch_compile,
                       threads=args.torch_threads)
  if args.kind == 'pipeline':
    return build_pipeline(args.batch)
  raise ValueError(f'unknown contender {args.kind!r}')


def main():
  p = argparse.ArgumentParser(description='Serves one contender.')
  p.add_argument('kind', choices=('ours', 'ref', 'torch', 'pipeline'))
  p.add_argument('--arch', default='resnet18_cifar')
  p.add_argument('--width_mult', type=float, default=0.25)
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--dtype', default='float32')
  p.add_argument('--ablation', action='store_true')
  p.add_argument('--torch_compile', action='store_true')
  p.add_argument('--torch_threads', type=int, default=0)
  args = p.parse_args()
  try:
    run, info = _build(args)
  except Exception as e:  # pylint: disable=broad-except
    harness.fail(f'{type(e).__name__}: {e}')
  harness.serve(run, info)


if __name__ == '__main__':
  main()
