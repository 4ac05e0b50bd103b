"""Our CIFAR input pipeline against the authors' torchvision one, measured on the same images.

What a float64 lockstep cannot see, because it feeds both sides the same
batches: how the images are decoded, what the random augmentation's draws
look like, which images each epoch holds, and the constants of the
evaluation path. Each is measured here, ours through the code a run uses and
theirs through torchvision as DingXiaoH/ACNet's `data/data_factory.py`
builds it:

    train: Pad(4) (fill 0, on the PIL image), RandomCrop(32), RandomHorizontalFlip(),
           ToTensor(), Normalize((0.5,) * 3, (0.5,) * 3), in an InfiniteDataLoader
           (data/dataset_util.py: a DataLoader(shuffle=True), drop_last False,
           restarted when exhausted) read for 50000 // 128 = 390 iterations an epoch
    test:  ToTensor(), Normalize((0.5,) * 3, (0.5,) * 3)

1. decoding: every image of train/ and test/ decoded by our loader
   (`memory.load_split`, PIL) and by torchvision's `ImageFolder` loader; the
   file -> index -> label maps of both; optionally TensorFlow's default JPEG
   decoder (`--tf_decode`), which older runs here used.
2. normalisation: each side's float for every uint8 value, and the padded
   border's value after it.
3. augmentation: `--draws` augmented training images on each side, the same
   images in the same order (our order for `--seed`). Ours are
   `MemoryFeed.prepare_train`'s output, theirs the transform's. A probe image
   whose pixels encode their own row and column goes through the same draws
   (ours: the same step's key; theirs: torch's RNG state replayed), which
   gives each draw's crop offsets and flip; then every output pixel is
   checked against the real image cropped and flipped by them (padding
   included). Chi-square tests: offsets uniform on the 81 cells and on each
   axis, flip rate 1/2, flip independent of the offset, ours and theirs from
   one distribution. Per-channel mean and std of the normalised batches.
4. epoch order: over `--epochs` epochs, how often each training image is seen
   with our order (`order.train_batch_indices`) and with the authors'
   InfiniteDataLoader (simulated with torch's DataLoader on indices).
5. batch norm: our momentum and epsilon against the PyTorch mirror's
   (authors_torch), and what PyTorch's unbiased running
   variance (n / (n - 1) times ours) is at each BN of the model.

Needs the torch extra (torch, torchvision). From the repository root:

    python -m benchmarks.augmentation_vs_torchvision --data_dir=/tmp/cifar10 \\
        [--draws=100000 --epochs=20 --seed=0 --tf_decode --json=PATH]

With `--runs=WORKDIR[,WORKDIR...]` (and `--runs_only` to skip the rest) it
also evaluates trained runs' newest checkpoints on their test split twice: with
the running variances they trained, and with each BN's times n / (n - 1),
which is what PyTorch's unbiased running variance would be after the same
training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import acnet_jax  # noqa: F401  (sets the project's XLA:CPU flag, as in training)

PAD = 4
MEAN = STD = (0.5, 0.5, 0.5)


# ------------------------------------------------------------------- helpers


def chi_square_uniform(counts: np.ndarray) -> dict[str, float]:
  from scipy import stats

  result = stats.chisquare(np.asarray(counts, np.float64).ravel())
  return {
    'chi2': float(result.statistic),
    'dof': int(np.size(counts) - 1),
    'p': float(result.pvalue),
  }


def chi_square_table(table: np.ndarray) -> dict[str, float]:
  """Independence of a contingency table's rows and columns (no continuity
  correction), over its rows and columns that are not all zero."""
  from scipy import stats

  table = np.asarray(table, np.float64)
  table = table[table.sum(1) > 0][:, table.sum(0) > 0]
  result = stats.chi2_contingency(table, correction=False)
  return {'chi2': float(result.statistic), 'dof': int(result.dof), 'p': float(result.pvalue)}


def binomial_half(successes: int, trials: int) -> dict[str, float]:
  from scipy import stats

  return {
    'rate': successes / trials,
    'n': trials,
    'p': float(stats.binomtest(successes, trials, 0.5).pvalue),
  }


def probe_image(size: int = 32) -> np.ndarray:
  """uint8 (size, size, 3): red = row + 1, green = column + 1, blue = 255;
  padding (0) is told from every pixel of the image."""
  rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing='ij')
  return np.stack([rows + 1, cols + 1, np.full_like(rows, 255)], -1).astype(np.uint8)


def draws_of_probe(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(offsets (n, 2) in 0..2*PAD, flips (n,)) from augmented probes (uint8,
  (n, 32, 32, 3)). The centre pixel is inside the image for every offset."""
  size = outputs.shape[1]
  c = size // 2
  row = outputs[:, c, c, 0].astype(int) - 1
  flips = outputs[:, c, c + 1, 1].astype(int) < outputs[:, c, c, 1].astype(int)
  col = outputs[:, c, c, 1].astype(int) - 1
  # Output (i, j) is padded-image (i + dy, j + dx), or (i + dy, size - 1 - j + dx) flipped.
  dy = row - c + PAD
  dx = np.where(flips, col - (size - 1 - c) + PAD, col - c + PAD)
  return np.stack([dy, dx], -1), flips


def expected_augmented(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
  """uint8: the images zero-padded by PAD, cropped at the offsets, flipped where flips."""
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
  rows = offsets[:, 0, None] + np.arange(h)[None]
  cols = offsets[:, 1, None] + np.arange(w)[None]
  cols = np.where(flips[:, None], cols[:, ::-1], cols)
  return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def padding_mask(offsets: np.ndarray, flips: np.ndarray, size: int = 32) -> np.ndarray:
  """bool (n, size, size): which output pixels are padding."""
  zeros = np.zeros((len(offsets), size, size, 1), np.uint8)
  return expected_augmented(np.ones_like(zeros), offsets, flips)[..., 0] == 0


def to_uint8(normalised: np.ndarray) -> np.ndarray:
  """Back from (x / 255 - 0.5) / 0.5 to the uint8 value (exact after rounding)."""
  return np.rint((normalised * np.asarray(STD) + np.asarray(MEAN)) * 255).astype(np.int64)


class Accumulator:
  """Per-channel sums over pixels and per-image channel means, of normalised images."""

  def __init__(self):
    self.sum = np.zeros(3)
    self.sum_sq = np.zeros(3)
    self.pixels = 0
    self.image_means: list[np.ndarray] = []

  def add(self, x: np.ndarray) -> None:
    x = np.asarray(x, np.float64)
    self.sum += x.sum((0, 1, 2))
    self.sum_sq += np.square(x).sum((0, 1, 2))
    self.pixels += x.shape[0] * x.shape[1] * x.shape[2]
    self.image_means.append(x.mean((1, 2)))

  def result(self) -> dict[str, Any]:
    mean = self.sum / self.pixels
    means = np.concatenate(self.image_means)
    return {
      'mean': mean.tolist(),
      'std': np.sqrt(self.sum_sq / self.pixels - mean**2).tolist(),
      # Of the mean: images are the independent units, not pixels.
      'mean_standard_error': (means.std(0, ddof=1) / math.sqrt(len(means))).tolist(),
    }


class DrawTally:
  """What one side's draws did: offsets, flips, padding values, mismatches."""

  def __init__(self):
    self.offsets: list[np.ndarray] = []
    self.flips: list[np.ndarray] = []
    self.pixels = Accumulator()
    self.padding_values: set[float] = set()
    self.padding_pixels = 0
    self.mismatched_pixels = 0
    self.total_pixels = 0

  def add(self, originals: np.ndarray, augmented: np.ndarray, probes: np.ndarray) -> None:
    offsets, flips = draws_of_probe(probes)
    self.offsets.append(offsets)
    self.flips.append(flips)
    self.pixels.add(augmented)
    pad = padding_mask(offsets, flips)
    self.padding_values.update(np.unique(augmented[pad]).tolist())
    self.padding_pixels += int(pad.sum())
    self.mismatched_pixels += int(
      np.sum(to_uint8(augmented) != expected_augmented(originals, offsets, flips))
    )
    self.total_pixels += augmented.size

  def result(self) -> dict[str, Any]:
    offsets, flips = np.concatenate(self.offsets), np.concatenate(self.flips)
    cells = 2 * PAD + 1
    grid = np.zeros((cells, cells), np.int64)
    np.add.at(grid, (offsets[:, 0], offsets[:, 1]), 1)
    by_flip = np.zeros((cells * cells, 2), np.int64)
    np.add.at(by_flip, (offsets[:, 0] * cells + offsets[:, 1], flips.astype(int)), 1)
    n = len(flips)
    return {
      'draws': n,
      'offsets_in_range': bool(offsets.min() >= 0 and offsets.max() < cells),
      'offset_counts': grid.tolist(),
      'offset_uniform_81': chi_square_uniform(grid),
      'row_offset_uniform': chi_square_uniform(grid.sum(1)),
      'col_offset_uniform': chi_square_uniform(grid.sum(0)),
      'mean_abs_offset': np.abs(offsets - PAD).mean(0).tolist(),
      'flip': binomial_half(int(flips.sum()), n),
      'flip_vs_offset': chi_square_table(by_flip),
      # Neighbours in a batch and the same batch slot at consecutive steps.
      'serial_correlation': {
        'row_offset_next_draw': float(np.corrcoef(offsets[:-1, 0], offsets[1:, 0])[0, 1]),
        'flip_next_draw': float(np.corrcoef(flips[:-1], flips[1:])[0, 1]),
      },
      'padding_fraction': self.padding_pixels / (n * 32 * 32),
      'padding_values': sorted(self.padding_values),
      'mismatched_pixel_values': self.mismatched_pixels,
      'pixel_values': self.total_pixels,
      'pixels': self.pixels.result(),
      '_image_means': np.concatenate(self.pixels.image_means),
    }


def expected_padding_fraction(size: int = 32) -> float:
  inside = np.mean([size - abs(d - PAD) for d in range(2 * PAD + 1)]) / size
  return 1 - inside**2


# ------------------------------------------------------------------ our side


def our_config(data_dir: str, seed: int):
  from acnet_jax.training import presets

  config = presets.preset('cfqkbnc', 'acnet_cosine')
  config.dataset, config.data_dir, config.seed = 'image_folder', data_dir, seed
  return config


def our_feed(config):
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from acnet_jax.data import feeds
  from acnet_jax.training.trainer import create_mesh

  mesh = create_mesh()
  sharder = feeds.Sharder(NamedSharding(mesh, P()), NamedSharding(mesh, P(mesh.axis_names[0])))
  return feeds.MemoryFeed(config, sharder)


def our_draws(
  feed, steps: int, steps_per_epoch: int, probe: np.ndarray, train_images: np.ndarray
) -> tuple[DrawTally, np.ndarray]:
  """Our augmented batches of steps 0..steps-1, as a run computes them, and
  the probe through each step's draws; also the image indices, in order."""
  import jax
  import jax.numpy as jnp

  prepare = jax.jit(feed.prepare_train)
  size = feed.config.batch_size
  probes = jax.device_put(np.broadcast_to(probe, (size, *probe.shape)).copy())
  probe_inputs = (probes, jnp.zeros((size,), jnp.int32), jnp.arange(size, dtype=jnp.int32))
  tally, indices = DrawTally(), []
  for step in range(steps):
    inputs = feed.train_inputs(step, steps_per_epoch)
    x, _ = prepare(inputs, jnp.int32(step))
    p, _ = prepare(probe_inputs, jnp.int32(step))
    batch = np.asarray(inputs[2])
    tally.add(train_images[batch], np.asarray(x), to_uint8(np.asarray(p)).astype(np.uint8))
    indices.append(batch)
  return tally, np.concatenate(indices)


# -------------------------------------------------------------- their side


def their_train_transform():
  """data/data_factory.py's CIFAR-10 training transform."""
  from torchvision import transforms

  return transforms.Compose(
    [
      transforms.Pad(padding=(4, 4, 4, 4)),
      transforms.RandomCrop(32),
      transforms.RandomHorizontalFlip(),
      transforms.ToTensor(),
      transforms.Normalize(MEAN, STD),
    ]
  )


def their_eval_transform():
  from torchvision import transforms

  return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def their_draws(
  pil_images: list,
  indices: np.ndarray,
  train_images: np.ndarray,
  probe: np.ndarray,
  seed: int,
  chunk: int = 1024,
) -> DrawTally:
  """The authors' transform on the images at `indices`, in order, with torch's
  global RNG (their DataLoader has no workers); each draw replayed on the probe."""
  import torch
  from PIL import Image

  torch.manual_seed(seed)
  transform = their_train_transform()
  probe_pil = Image.fromarray(probe)
  tally = DrawTally()
  for start in range(0, len(indices), chunk):
    batch = indices[start : start + chunk]
    outputs, probes = [], []
    for i in batch:
      state = torch.get_rng_state()
      outputs.append(transform(pil_images[i]).permute(1, 2, 0).numpy())
      torch.set_rng_state(state)
      probes.append(transform(probe_pil).permute(1, 2, 0).numpy())
    tally.add(train_images[batch], np.stack(outputs), to_uint8(np.stack(probes)).astype(np.uint8))
  return tally


# ------------------------------------------------------------------ sections


def decoding(data_dir: str, feed, tf_decode: bool) -> tuple[dict[str, Any], dict[str, Any]]:
  """Ours (the feed's loaded splits) against torchvision's ImageFolder loader."""
  from torchvision import datasets

  from acnet_jax.data import memory

  result, loaded = {}, {}
  for split in ('train', 'test'):
    ours = memory.load_split(feed.config, feed.info, split)
    # The feed's splits are these: decoded once.
    feed.__dict__['train_data' if split == 'train' else 'eval_data'] = feed.sharder.replicate(
      (ours.images, ours.labels)
    )
    source = memory.folder_source(feed.config, split)
    folder = datasets.ImageFolder(os.path.join(data_dir, source.split))
    paths = [path for path, _ in folder.samples]
    same_files = [source.name(i) for i in range(len(source))] == paths
    theirs_pil = [folder.loader(path) for path in paths]
    theirs = np.stack([np.asarray(image) for image in theirs_pil])
    difference = np.abs(ours.images.astype(int) - theirs.astype(int))
    result[split] = {
      'images': len(paths),
      'same_file_order': same_files,
      'same_labels': bool(np.array_equal(ours.labels, [label for _, label in folder.samples])),
      'class_names': list(folder.classes) == list(feed.class_names),
      'identical_images': int(np.sum(difference.reshape(len(paths), -1).max(1) == 0)),
      'max_abs_difference': int(difference.max()),
    }
    if tf_decode:
      result[split]['tensorflow_default_decoder'] = tensorflow_against_pil(paths, theirs)
    loaded[split] = (ours.images, theirs_pil)
  return result, loaded


def tensorflow_against_pil(paths: Sequence[str], pil: np.ndarray) -> dict[str, Any]:
  import tensorflow as tf

  decoded = np.stack(
    [tf.io.decode_jpeg(tf.io.read_file(path), channels=3).numpy() for path in paths]
  )
  difference = np.abs(decoded.astype(int) - pil.astype(int))
  return {
    'identical_images': int(np.sum(difference.reshape(len(paths), -1).max(1) == 0)),
    'mean_abs_difference': float(difference.mean()),
    'pixels_differing_fraction': float(np.mean(difference > 0)),
    'max_abs_difference': int(difference.max()),
    'mean_signed_difference': float((decoded.astype(int) - pil.astype(int)).mean()),
  }


def normalisation() -> dict[str, Any]:
  import jax
  from PIL import Image

  from acnet_jax.data.on_device import normalize

  values = np.arange(256, dtype=np.uint8)
  image = np.broadcast_to(values[None, :, None], (1, 256, 3)).copy()
  ours = np.asarray(normalize(image[None], MEAN, STD))[0, 0, :, 0]
  # Inside a step, as training and evaluation run it: XLA may reorder the arithmetic.
  jitted = np.asarray(jax.jit(lambda x: normalize(x, MEAN, STD))(image[None]))[0, 0, :, 0]
  theirs = their_eval_transform()(Image.fromarray(image)).numpy()[0, 0]
  return {
    'max_abs_difference': float(np.abs(ours - theirs).max()),
    'identical_values': int(np.sum(ours == theirs)),
    'jitted_max_abs_difference': float(np.abs(jitted - theirs).max()),
    'jitted_identical_values': int(np.sum(jitted == theirs)),
    'ours_of_0': float(ours[0]),
    'theirs_of_0': float(theirs[0]),
    'ours_of_255': float(ours[255]),
    'theirs_of_255': float(theirs[255]),
  }


def eval_path(feed, test_pil: list) -> dict[str, Any]:
  """Our evaluation batches (prepare_eval, masks) against the authors' test transform."""
  import jax

  prepare = jax.jit(feed.prepare_eval)
  transform = their_eval_transform()
  seen, worst, order_ok = 0, 0.0, True
  for inputs, mask in feed.eval_inputs():
    x, _ = prepare(inputs)
    indices, mask = np.asarray(inputs[2]), np.asarray(mask)
    kept = indices[mask]
    order_ok &= bool(np.array_equal(kept, np.arange(seen, seen + len(kept))))
    theirs = np.stack([transform(test_pil[i]).permute(1, 2, 0).numpy() for i in kept])
    worst = max(worst, float(np.abs(np.asarray(x)[mask] - theirs).max()))
    seen += len(kept)
  return {
    'examples_counted': seen,
    'each_once_in_order': order_ok,
    'max_abs_difference_to_torchvision': worst,
    'augmented': False,
  }


def epoch_order(seed: int, epochs: int, num_examples: int, batch_size: int) -> dict[str, Any]:
  import torch

  from acnet_jax.data import order

  steps_per_epoch = num_examples // batch_size
  counts = np.zeros(num_examples, np.int64)
  dropped, each_once = [], True
  for epoch in range(epochs):
    seen = np.concatenate(
      [
        order.train_batch_indices(
          seed, epoch * steps_per_epoch + s, steps_per_epoch, batch_size, num_examples
        )
        for s in range(steps_per_epoch)
      ]
    )
    each_once &= len(np.unique(seen)) == len(seen)
    counts += np.bincount(seen, minlength=num_examples)
    dropped.append(np.setdiff1d(np.arange(num_examples), seen))
  all_dropped = np.concatenate(dropped)
  iterations = epochs * steps_per_epoch
  ours = {
    'iterations': iterations,
    'batch_sizes': {batch_size: iterations},
    'no_repeat_within_epoch': bool(each_once),
    'dropped_per_epoch': [len(d) for d in dropped],
    'distinct_dropped': int(len(np.unique(all_dropped))),
    'dropped_in_two_or_more_epochs': int(np.sum(np.bincount(all_dropped) >= 2)),
    'times_seen': {int(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
    'examples_seen': int(counts.sum()),
  }

  # data/dataset_util.py's InfiniteDataLoader, on indices.
  torch.manual_seed(seed)
  loader = torch.utils.data.DataLoader(range(num_examples), batch_size=batch_size, shuffle=True)
  iterator, sizes, counts = iter(loader), {}, np.zeros(num_examples, np.int64)
  partial_at = []
  for iteration in range(epochs * steps_per_epoch):
    try:
      batch = next(iterator)
    except StopIteration:
      iterator = iter(loader)
      batch = next(iterator)
    batch = batch.numpy()
    sizes[len(batch)] = sizes.get(len(batch), 0) + 1
    if len(batch) != batch_size:
      partial_at.append(iteration)
    counts += np.bincount(batch, minlength=num_examples)
  theirs = {
    'iterations': epochs * steps_per_epoch,
    'batch_sizes': sizes,
    'partial_batches_at_iterations': partial_at,
    'times_seen': {int(k): int(v) for k, v in zip(*np.unique(counts, return_counts=True))},
    'examples_seen': int(counts.sum()),
  }
  return {'ours': ours, 'authors_infinite_dataloader': theirs}


def bn_inputs(model, batch: int, image_shape: Sequence[int] = (32, 32, 3)) -> dict[str, tuple]:
  """BN path ('conv1/square_bn') -> the (batch, H, W) shape it normalises over in training."""
  import jax
  import jax.numpy as jnp

  from acnet_jax.blocks.batch_norm import BatchNorm

  x = jnp.zeros((batch, *image_shape))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x[:1], train=False))
  shapes = jax.eval_shape(
    lambda v: model.apply(
      v,
      x,
      train=True,
      mutable=['batch_stats', 'intermediates'],
      capture_intermediates=lambda m, _: isinstance(m, BatchNorm),
    )[1],
    variables,
  )
  # Captured at intermediates/<module path>/__call__/0.
  return {
    '/'.join(str(getattr(k, 'key', k)) for k in path[:-2]): tuple(leaf.shape[:-1])
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes['intermediates'])[0]
  }


def batch_norm(config, batch_sizes: Sequence[int]) -> dict[str, Any]:
  """Our BN constants and the mirror's; n per BN and PyTorch's unbiased factor there."""
  import torch

  from acnet_jax.blocks import primitives
  from acnet_jax.training.trainer import create_model
  from authors_torch import acnet_models

  theirs = acnet_models.build('cfqkbnc', 'acnet', 10, gamma_init=config.acb.gamma_init)
  bns = [m for m in theirs.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  model = create_model(config)
  layers = []
  for size in batch_sizes:
    for name, shape in bn_inputs(model, size).items():
      n = math.prod(shape)
      layers.append(
        {
          'bn': name,
          'batch': size,
          'h_w': list(shape[1:]),
          'n': n,
          'unbiased_over_biased': n / (n - 1),
          'eval_output_scale_change': 1 - math.sqrt((n - 1) / n),
        }
      )
  return {
    'ours': {
      'momentum_flax': primitives.BN_MOMENTUM,
      'epsilon': primitives.BN_EPSILON,
      'running_var': 'biased (sum / n)',
    },
    'mirror': {
      'momentum_torch': sorted({m.momentum for m in bns}),
      'epsilon': sorted({m.eps for m in bns}),
      'count': len(bns),
      'running_var': 'unbiased (sum / (n - 1))',
    },
    'layers': layers,
  }


def unbiased_running_variance(workdir: str, data_dir: str = '') -> dict[str, Any]:
  """A trained run's newest checkpoint on its test split, as trained and with
  every BN's running variance times n / (n - 1): what PyTorch's would be after
  the same training (every batch of a run here has the same n)."""
  import jax

  from acnet_jax.training import workdir as runs
  from acnet_jax.training.trainer import create_model

  run = runs.read_run(workdir)
  config = run.config
  if data_dir:
    config.data_dir = data_dir
  image_shape = run.input_shape or (32, 32, 3)
  state = runs.restore_step_or_newest(workdir, config, None, image_shape)
  model = create_model(config)
  sizes = {
    name: math.prod(shape)
    for name, shape in bn_inputs(model, config.batch_size, image_shape).items()
  }

  def unbiased(path, value):
    keys = [str(getattr(k, 'key', k)) for k in path]
    if keys[-1] != 'var':
      return value
    n = sizes['/'.join(keys[:-1])]
    return value * (n / (n - 1))

  variants = {
    'as_trained': state.batch_stats,
    'unbiased': jax.tree_util.tree_map_with_path(unbiased, state.batch_stats),
  }
  feed = our_feed(config)
  prepare = jax.jit(feed.prepare_eval)
  apply = jax.jit(
    lambda stats, x: model.apply({'params': state.params, 'batch_stats': stats}, x, train=False)
  )
  logits, labels = {name: [] for name in variants}, []
  for inputs, mask in feed.eval_inputs():
    x, y = prepare(inputs)
    mask = np.asarray(mask)
    labels.append(np.asarray(y)[mask])
    for name, stats in variants.items():
      logits[name].append(np.asarray(apply(stats, x))[mask])
  labels = np.concatenate(labels)
  logits = {name: np.concatenate(values) for name, values in logits.items()}
  predictions = {name: values.argmax(-1) for name, values in logits.items()}
  a, b = logits['as_trained'], logits['unbiased']
  return {
    'workdir': workdir,
    'step': int(state.step),
    'examples': len(labels),
    'top1_as_trained': float(np.mean(predictions['as_trained'] == labels)),
    'top1_unbiased': float(np.mean(predictions['unbiased'] == labels)),
    'predictions_changed': int(np.sum(predictions['as_trained'] != predictions['unbiased'])),
    'max_rel_logit_change': float(np.abs(a - b).max() / np.abs(a).max()),
  }


# --------------------------------------------------------------------- report


def compare_sides(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
  both = np.array([np.ravel(ours['offset_counts']), np.ravel(theirs['offset_counts'])])
  flips = np.array(
    [
      [side['flip']['rate'] * side['draws'], (1 - side['flip']['rate']) * side['draws']]
      for side in (ours, theirs)
    ]
  ).round()
  a, b = ours['pixels'], theirs['pixels']
  difference = np.subtract(a['mean'], b['mean'])
  # The same images in the same order on both sides: paired by draw.
  paired = ours['_image_means'] - theirs['_image_means']
  error = paired.std(0, ddof=1) / math.sqrt(len(paired))
  return {
    'offsets_same_distribution': chi_square_table(both),
    'flips_same_rate': chi_square_table(flips),
    'channel_mean_difference': difference.tolist(),
    'channel_mean_difference_z': (difference / error).tolist(),
    'channel_std_difference': np.subtract(a['std'], b['std']).tolist(),
  }


def format_report(results: dict[str, Any]) -> str:
  lines = []
  add = lines.append
  for r in results.get('unbiased_running_variance', []):
    add(
      f'{r["workdir"]} (step {r["step"]}): test top-1 {100 * r["top1_as_trained"]:.2f} with '
      f'its running variances, {100 * r["top1_unbiased"]:.2f} with them x n / (n - 1); '
      f'{r["predictions_changed"]} of {r["examples"]} predictions change, max relative '
      f'logit change {r["max_rel_logit_change"]:.1e}'
    )
  if 'decoding' not in results:
    return '\n'.join(lines)
  for split, r in results['decoding'].items():
    add(
      f'decode {split}: {r["identical_images"]}/{r["images"]} images identical (ours vs '
      f'torchvision ImageFolder), max |diff| {r["max_abs_difference"]}; same file order '
      f'{r["same_file_order"]}, same labels {r["same_labels"]}'
    )
    if 'tensorflow_default_decoder' in r:
      t = r['tensorflow_default_decoder']
      add(
        f'  TensorFlow default decoder vs PIL: {t["identical_images"]} identical, mean |diff| '
        f'{t["mean_abs_difference"]:.3f}, {100 * t["pixels_differing_fraction"]:.1f}% of '
        f'values differ, max {t["max_abs_difference"]}, mean signed '
        f'{t["mean_signed_difference"]:+.4f}'
      )
  n = results['normalisation']
  add(
    f'normalise: max |ours - torchvision| over uint8 0..255 = {n["max_abs_difference"]:.2e} '
    f'({n["identical_values"]}/256 identical; jitted {n["jitted_max_abs_difference"]:.2e}, '
    f'{n["jitted_identical_values"]}/256); 0 -> {n["ours_of_0"]} / {n["theirs_of_0"]}'
  )
  add('')
  add('| augmentation | ours | torchvision (authors) |')
  add('|---|---|---|')
  o, t = results['augmentation']['ours'], results['augmentation']['torchvision']

  def row(label, f):
    add(f'| {label} | {f(o)} | {f(t)} |')

  row('draws', lambda r: f'{r["draws"]:,}')
  row(
    'offsets chi2, 81 cells (p)',
    lambda r: f'{r["offset_uniform_81"]["chi2"]:.1f} (p {r["offset_uniform_81"]["p"]:.3f})',
  )
  row(
    'row / col offsets chi2, 9 cells (p)',
    lambda r: (
      f'{r["row_offset_uniform"]["chi2"]:.1f} '
      f'(p {r["row_offset_uniform"]["p"]:.3f}) / {r["col_offset_uniform"]["chi2"]:.1f} '
      f'(p {r["col_offset_uniform"]["p"]:.3f})'
    ),
  )
  row(
    'mean |offset - 4| row, col (uniform: 2.222)',
    lambda r: ', '.join(f'{v:.4f}' for v in r['mean_abs_offset']),
  )
  row('flip rate (binomial p)', lambda r: f'{r["flip"]["rate"]:.4f} (p {r["flip"]["p"]:.3f})')
  row(
    'flip vs offset chi2 (p)',
    lambda r: f'{r["flip_vs_offset"]["chi2"]:.1f} (p {r["flip_vs_offset"]["p"]:.3f})',
  )
  row(
    'serial corr. row offset, flip',
    lambda r: (
      f'{r["serial_correlation"]["row_offset_next_draw"]:+.4f}, '
      f'{r["serial_correlation"]["flip_next_draw"]:+.4f}'
    ),
  )
  row(
    f'padding fraction (expected {results["augmentation"]["expected_padding_fraction"]:.4f})',
    lambda r: f'{r["padding_fraction"]:.4f}',
  )
  row('padding values after normalising', lambda r: str(r['padding_values']))
  row(
    'pixels differing from pad+crop+flip of the image',
    lambda r: f'{r["mismatched_pixel_values"]} of {r["pixel_values"]:,}',
  )
  row('channel mean (R, G, B)', lambda r: ', '.join(f'{v:.4f}' for v in r['pixels']['mean']))
  row('channel std (R, G, B)', lambda r: ', '.join(f'{v:.4f}' for v in r['pixels']['std']))
  c = results['augmentation']['ours_vs_torchvision']
  add(
    f'ours vs torchvision: offsets chi2 {c["offsets_same_distribution"]["chi2"]:.1f} on '
    f'{c["offsets_same_distribution"]["dof"]} dof (p {c["offsets_same_distribution"]["p"]:.3f}), '
    f'flip rates p {c["flips_same_rate"]["p"]:.3f}, channel mean differences z = '
    + ', '.join(f'{z:+.2f}' for z in c['channel_mean_difference_z'])
  )
  add('')
  e = results['eval']
  add(
    f'eval: {e["examples_counted"]} test examples counted, each once in order: '
    f'{e["each_once_in_order"]}; max |ours - torchvision test transform| = '
    f'{e["max_abs_difference_to_torchvision"]:.2e}'
  )
  for side, r in results['epoch_order'].items():
    add(
      f'order {side}: {r["iterations"]} iterations, batch sizes {r["batch_sizes"]}, '
      f'times each image seen {r["times_seen"]}, examples {r["examples_seen"]:,}'
    )
    if 'distinct_dropped' in r:
      add(
        f'  dropped per epoch {sorted(set(r["dropped_per_epoch"]))}, distinct dropped '
        f'{r["distinct_dropped"]}, dropped in two or more epochs '
        f'{r["dropped_in_two_or_more_epochs"]}; no repeat within an epoch: '
        f'{r["no_repeat_within_epoch"]}'
      )
    else:
      add(f'  partial batches at iterations {r["partial_batches_at_iterations"]}')
  b = results['batch_norm']
  add(
    f'BN ours: momentum {b["ours"]["momentum_flax"]} (flax), eps {b["ours"]["epsilon"]}, '
    f'biased running var; mirror: momentum {b["mirror"]["momentum_torch"]} (torch), eps '
    f'{b["mirror"]["epsilon"]}, unbiased running var ({b["mirror"]["count"]} BNs)'
  )
  for layer in b['layers']:
    add(
      f'  {layer["bn"]} batch {layer["batch"]} {layer["h_w"]}: n {layer["n"]}, unbiased/biased '
      f'{layer["unbiased_over_biased"]:.6f}, eval output scale change '
      f'{layer["eval_output_scale_change"]:.2e}'
    )
  return '\n'.join(lines)


def run(data_dir: str, draws: int, epochs: int, seed: int, tf_decode: bool) -> dict[str, Any]:
  config = our_config(data_dir, seed)
  feed = our_feed(config)
  timings = {}
  start = time.perf_counter()
  decode, loaded = decoding(data_dir, feed, tf_decode)
  timings['decoding_s'] = time.perf_counter() - start
  train_images, train_pil = loaded['train']
  steps_per_epoch = feed.num_train // config.batch_size
  probe = probe_image(train_images.shape[1])

  start = time.perf_counter()
  steps = -(-draws // config.batch_size)
  ours, indices = our_draws(feed, steps, steps_per_epoch, probe, train_images)
  timings['ours_s'] = time.perf_counter() - start
  start = time.perf_counter()
  theirs = their_draws(train_pil, indices, train_images, probe, seed)
  timings['torchvision_s'] = time.perf_counter() - start
  ours, theirs = ours.result(), theirs.result()
  comparison = compare_sides(ours, theirs)
  for side in (ours, theirs):
    side.pop('_image_means')

  start = time.perf_counter()
  evaluation = eval_path(feed, loaded['test'][1])
  order = epoch_order(seed, epochs, feed.num_train, config.batch_size)
  bn = batch_norm(config, (config.batch_size, feed.num_train % config.batch_size or 1))
  timings['rest_s'] = time.perf_counter() - start
  return {
    'data_dir': data_dir,
    'seed': seed,
    'draws_requested': draws,
    'epochs': epochs,
    'decoding': decode,
    'normalisation': normalisation(),
    'augmentation': {
      'ours': ours,
      'torchvision': theirs,
      'expected_padding_fraction': expected_padding_fraction(),
      'ours_vs_torchvision': comparison,
    },
    'eval': evaluation,
    'epoch_order': order,
    'batch_norm': bn,
    'timings': timings,
  }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--data_dir',
    default='',
    help='An image folder: train/<class>/*.jpg and test/<class>/*.jpg '
    "(with --runs_only: default, each run's own).",
  )
  parser.add_argument(
    '--draws',
    type=int,
    default=100_000,
    help='Augmented images on each side (ours rounds up to whole batches).',
  )
  parser.add_argument('--epochs', type=int, default=20, help='Epochs of the order count.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument(
    '--tf_decode',
    action='store_true',
    help="Also compare TensorFlow's default JPEG decoder with PIL.",
  )
  parser.add_argument(
    '--runs',
    default='',
    help='Comma-separated workdirs of trained runs: each evaluated with its '
    "BN running variances as trained and as PyTorch's unbiased ones.",
  )
  parser.add_argument(
    '--runs_only',
    action='store_true',
    help='Only the --runs evaluation, not the pipeline comparison.',
  )
  parser.add_argument('--json', default='', help='Write the numbers here as JSON.')
  args = parser.parse_args(argv)
  if not (args.data_dir or args.runs_only):
    parser.error('--data_dir is required, except with --runs_only')
  results = (
    {} if args.runs_only else run(args.data_dir, args.draws, args.epochs, args.seed, args.tf_decode)
  )
  if args.runs:
    results['unbiased_running_variance'] = [
      unbiased_running_variance(workdir, args.data_dir) for workdir in args.runs.split(',')
    ]
  print(format_report(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1, default=str)
  return results


if __name__ == '__main__':
  main()
