r"""The input pipeline at ImageNet resolution: img/s per host core, and the
host cores one accelerator needs.

  python bench/input_pipeline.py            # full (~4 min on 2 cores)
  python bench/input_pipeline.py --quick    # fewer images and rounds

Stand-in data: CIFAR-10 train JPEGs of ../shared, upscaled to ImageNet's
typical 500x375 (bicubic) with film-grain noise so that the JPEGs (quality
90) are about ImageNet-sized (its train JPEGs average ~110 KB), written to a
temporary folder (never to the repository).

Contenders, per image, in tf.data (read the file, parallel map with
AUTOTUNE, batch 128, prefetch), interleaved in one process
(`harness.interleave`):

* decode: `tf.io.decode_jpeg` of the whole image and nothing else (reduced
  to its maximum, so the batch is small): the floor of a pipeline that
  decodes every pixel;
* before: wt_jax's inception crop until this benchmark's first run: a
  whole decode, the crop (area 8-100%, aspect 3/4-4/3), an antialiased
  resize to 224, a flip;
* whole: `images.random_resized_crop_flip` after a whole decode (the crop
  of decoded images: folder sources, cached or fixed-size TFDS data);
* wt_jax: `images.decode_random_resized_crop_flip`, the crop of wt_jax's
  ImageNet path (variable-size TFDS images, uncached): the crop window
  drawn from the JPEG header's shape and `tf.image.decode_and_crop_jpeg`,
  which decodes only the window's blocks, then a plain bilinear resize to
  224 and a flip.

Each runs twice, in a subprocess pinned to one core (its CPU affinity, which
all TF threads inherit) and in one with every core. Reported: img/s per
core and on all cores, the scaling, and host cores per accelerator = the
accelerator's step rate / img/s per core. The step rate is `--step_rate`
(default: the stated estimate `STEP_RATE_ESTIMATE` for ResNet-18 bfloat16
on one H100/H200), or the measured one of the accelerator check
(`--throughput_json results/gpu/throughput.json`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import contenders as K
import harness as H
import rendering as R

log = H.logger('input_pipeline')
SIZE = (500, 375)  # ImageNet's most common train image size (w, h)
RESOLUTION = 224
BATCH = 128
# ResNet-18 at 224, bfloat16, one H100/H200: NVIDIA's published ResNet-50
# mixed-precision training rate on one A100 (~2,700 img/s, DeepLearning-
# Examples) x ~1.7 (H100) x 2.25 (ResNet-50's 4.1 / ResNet-18's 1.82
# GMACs per image) ~ 10,000 img/s. A stated estimate, not a measurement.
STEP_RATE_ESTIMATE = 10_000.0
CONTENDERS = ('decode', 'before', 'whole', 'wt_jax')


def make_images(folder: str, count: int, seed: int = 0) -> dict:
  """`count` ImageNet-sized JPEGs from CIFAR-10 train JPEGs; their sizes."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  with zipfile.ZipFile(K.CIFAR_ZIP) as z:
    names = sorted(n for n in z.namelist()
                   if n.startswith('train/') and n.endswith('.jpg'))
    picked = [names[i] for i in rng.choice(len(names), count, replace=False)]
    sizes = []
    for i, name in enumerate(picked):
      with Image.open(io.BytesIO(z.read(name))) as small:
        big = np.asarray(small.convert('RGB').resize(SIZE, Image.BICUBIC),
                         np.float32)
      grain = rng.normal(0.0, 16.0, big.shape[:2] + (1,))
      big = np.clip(big + grain, 0, 255).astype(np.uint8)
      path = os.path.join(folder, f'{i:05d}.jpg')
      Image.fromarray(big).save(path, quality=90)
      sizes.append(os.path.getsize(path))
  return {'count': count, 'mean_kb': sum(sizes) / len(sizes) / 1024,
          'size': f'{SIZE[0]}x{SIZE[1]}'}


def _datasets(folder: str):
  """{contender: a repeating tf.data pipeline of batches}."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from wt_jax.data import images
  # pylint: enable=g-import-not-at-top
  auto = tf.data.AUTOTUNE
  paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))

  def keyed(i):
    return tf.stack([tf.constant(0, tf.int64), tf.cast(i, tf.int64)])

  def decode(i, data):
    del i  # a scalar per image: the decode is forced, the batch is small
    return tf.reduce_max(tf.io.decode_jpeg(data, channels=3))

  def before(i, data):
    # wt_jax's 'imagenet' crop before fused decoding (commit c184d26): a
    # whole decode, the crop, an antialiased resize.
    crop_key, flip_key = tf.unstack(
        tf.random.experimental.stateless_split(keyed(i)))
    image = tf.io.decode_jpeg(data, channels=3)
    begin, crop = images.crop_window(tf.shape(image), crop_key)
    image = images.resize(tf.slice(image, begin, crop), RESOLUTION,
                          RESOLUTION)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_key)

  def whole(i, data):
    image = tf.io.decode_jpeg(data, channels=3)
    return images.random_resized_crop_flip(image, RESOLUTION, keyed(i))

  def wt_jax(i, data):
    return images.decode_random_resized_crop_flip(data, RESOLUTION, keyed(i))

  def pipeline(fn):
    ds = tf.data.Dataset.from_tensor_slices(paths).repeat().enumerate()
    ds = ds.map(lambda i, p: (i, tf.io.read_file(p)), num_parallel_calls=auto)
    ds = ds.map(fn, num_parallel_calls=auto)
    return ds.batch(BATCH).prefetch(auto)

  return {'decode': pipeline(decode), 'before': pipeline(before),
          'whole': pipeline(whole), 'wt_jax': pipeline(wt_jax)}


def worker(args) -> None:
  """One process (pinned by its parent): every contender, interleaved."""
  pipes = _datasets(args.folder)

  def contender(name):
    n, warm = max(1, args.images // BATCH), max(1, args.warm // BATCH)

    def run():
      # A fresh iterator per turn, deleted after it: no pipeline works in
      # the background during another contender's turn.
      it = iter(pipes[name])
      for _ in range(warm):  # start-up and the buffers, untimed
        next(it)
      t = time.perf_counter()
      for _ in range(n):
        next(it).numpy()  # an eager tensor: already computed
      seconds = time.perf_counter() - t
      del it
      return {'seconds': seconds, 'items': n * BATCH}
    return run

  rates = H.interleave({c: contender(c) for c in CONTENDERS}, args.rounds,
                       probe=False, prime=False)
  print(json.dumps({'rates': dict(rates), 'cores': len(os.sched_getaffinity(0))}))


def _spawn(args, folder: str, cores) -> dict:
  argv = [sys.executable, __file__, '--worker', '--folder', folder,
          '--images', str(args.images), '--rounds', str(args.rounds),
          '--warm', str(args.warm)]
  proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                        preexec_fn=lambda: os.sched_setaffinity(0, cores),
                        timeout=1800)
  if proc.returncode:
    raise RuntimeError(f'worker on cores {sorted(cores)} failed:\n'
                       f'{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def step_rate(args) -> tuple[float, str]:
  """The accelerator's img/s and where the figure comes from."""
  if args.throughput_json and os.path.exists(args.throughput_json):
    with open(args.throughput_json) as f:
      t = json.load(f)
    for label, rec in t['raw'].items():
      rates = sorted(rec['rates'].get('ours_bf16', []))
      if rates:
        return rates[len(rates) // 2], (f'measured: {args.throughput_json} '
                                        f'(ours_bf16, {label})')
  if args.step_rate:
    return args.step_rate, 'given (--step_rate)'
  return STEP_RATE_ESTIMATE, ('estimate (ResNet-18 bf16, one H100/H200; '
                              'bench/input_pipeline.py STEP_RATE_ESTIMATE)')


def measure(args):
  root = tempfile.mkdtemp(prefix='wt_bench_pipeline_')
  try:
    t0 = time.perf_counter()
    made = make_images(os.path.join(root, 'images'), args.count)
    log(f'wrote {made["count"]} JPEGs of {made["size"]}, mean '
        f'{made["mean_kb"]:.0f} KB, in {time.perf_counter() - t0:.0f} s')
    every = os.sched_getaffinity(0)
    one = _spawn(args, os.path.join(root, 'images'), {min(every)})
    log('one core done')
    alll = _spawn(args, os.path.join(root, 'images'), every)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  med = H.median
  per_core = {c: med(one['rates'][c]) for c in CONTENDERS}
  all_cores = {c: med(alll['rates'][c]) for c in CONTENDERS}
  rate, source = step_rate(args)
  rows = [[c, f'{per_core[c]:.0f}', f'{all_cores[c]:.0f} ({alll["cores"]} '
           'cores)', f'{all_cores[c] / per_core[c]:.2f}',
           f'{rate / per_core[c]:.1f}' if c != 'decode' else '-']
          for c in CONTENDERS]
  text = R.section(
      '## Input pipeline at 224 (`bench/input_pipeline.py`)',
      R.facts({'images': f'{made["count"]} JPEGs, {made["size"]}, quality '
                         f'90, mean {made["mean_kb"]:.0f} KB (CIFAR-10 '
                         'upscaled + grain: a stand-in for ImageNet)',
               'per turn': f'{args.images} images; {args.rounds} rounds, '
                           'interleaved, in one process per setting',
               'accelerator step rate': f'{rate:,.0f} img/s, {source}'},
              ('setting', 'value')),
      R.table(['contender', 'img/s on 1 core', 'img/s on all cores',
               'scaling', 'host cores per accelerator'], rows),
      R.facts({'wt_jax / before (per core)':
               f'{per_core["wt_jax"] / per_core["before"]:.2f}',
               'wt_jax / whole (per core)':
               f'{per_core["wt_jax"] / per_core["whole"]:.2f}',
               'wt_jax / decode (per core)':
               f'{per_core["wt_jax"] / per_core["decode"]:.2f}'},
              ('ratio', 'value')))
  return text, dict(images=made, one_core=one, all_cores=alll,
                    step_rate=rate, step_rate_source=source)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--count', type=int, default=512, help='JPEGs to write')
  p.add_argument('--images', type=int, default=1024, help='per turn')
  p.add_argument('--rounds', type=int, default=5)
  p.add_argument('--warm', type=int, default=256)
  p.add_argument('--step_rate', type=float, default=0.0)
  p.add_argument('--throughput_json', default='')
  p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--folder', default='', help=argparse.SUPPRESS)
  if '--worker' in sys.argv:
    worker(p.parse_args())
    return
  args = H.parse(p, dict(count=128, images=256, rounds=3, warm=128),
                 '128 JPEGs, 3 rounds of 256 images')
  text, raw = measure(args)
  H.emit(args, text, raw)


if __name__ == '__main__':
  main()
