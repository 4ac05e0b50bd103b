"""The config of a run: every knob at its default (`get_config`), and the check
that stops a bad value before anything is loaded or written (`validate_config`).

Presets (`presets.py`: one record per model and recipe, which `configs/*.py`
read) change the defaults where a recipe differs; the config a run used is
written to its workdir (`workdir.py`).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from acnet_jax import models
from acnet_jax.blocks.acb import ACB_IMPLS, validate_branches
from acnet_jax.blocks.switch import DTYPES, TRAINABLE_KINDS, TRAINING_BLOCKS
from acnet_jax.data import feeds
from acnet_jax.deploy import artifacts
from acnet_jax.errors import InputError
from acnet_jax.training.optim import LR_SCHEDULES


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # For the record: the original code's try_arg of the preset this config
  # came from ('<conv>_<recipe>', presets.py), and a free-text label of the run.
  config.try_arg = ''
  config.name = ''

  config.model = 'rc56'
  config.conv = 'acnet'  # 'normal' | 'acnet' | 'dbb' | 'repvgg'
  # True: train the conv kind (acnet, dbb or repvgg) in its online form, one
  # conv of a kernel built from the branches in every step, then one BN; each
  # branch BN becomes a learnable per-channel scale (acnet_jax/blocks/online.py).
  # It fuses to the same deploy model.
  config.online = False
  config.num_classes = 10
  config.acb = ml_collections.ConfigDict()  # Options of conv='acnet' only.
  # Initial BN scale of every ACB branch (online: of every branch scale).
  config.acb.gamma_init = 1.0
  config.acb.use_affine = True
  config.acb.branches = ('square', 'ver', 'hor')
  # False: the paper's ablation without BN in branches (the branches' convs
  # summed, then one BN); fuses exactly either way.
  config.acb.branch_bn = True
  # 'branches' (a conv per branch) or 'stacked' (one conv, 1D kernels padded
  # to KxK): same parameters, same values; which is faster is measured by
  # `python -m acnet_jax.benchmark` (docs/performance.md). Not used online.
  config.acb.impl = 'branches'
  config.repvgg = ml_collections.ConfigDict()  # Options of conv='repvgg' only.
  # True: Chu et al.'s quantization-friendly block (QARepVGG: BN on the KxK
  # branch only, one BN after the sum), whose fused kernel loses less to int8
  # (docs/deploy.md); it has no online form.
  config.repvgg.quantization_friendly = False

  # 'cifar10' | 'cifar100' | 'image_folder' | 'synthetic' | any tfds image
  # classification data set by name (streamed), e.g. 'imagenet2012'.
  config.dataset = 'cifar10'
  config.data_dir = ''  # tfds data_dir, or the root of an image folder.
  # 'memory': both splits as uint8 arrays on every device, augmented there
  # (CIFAR); 'stream': decoded and augmented on host threads while the devices
  # train (ImageNet); 'auto': memory for CIFAR, synthetic data and image
  # folders of one image size that fit in 4 GiB, else stream.
  config.pipeline = 'auto'
  # Streaming: the train crop and eval centre crop; synthetic: the side (0 = 32);
  # in memory otherwise unused (the images' own size).
  config.image_size = 0
  config.eval_split = ''  # Streaming tfds data sets: '' = 'validation'.
  config.data_workers = 0  # Streaming: host threads decoding images; 0 = one per CPU core.
  config.max_train_examples = 0  # 0 = all; a random subset for smoke runs (in memory).
  config.synthetic_examples = 512
  # In memory: pad 4, random crop back to size, random horizontal flip.
  # Streaming: always RandomResizedCrop(image_size) + horizontal flip (torchvision's).
  config.augment = True
  # Per channel, of pixels in [0, 1]. The original CIFAR code uses 0.5 and 0.5.
  config.pixel_mean = (0.5, 0.5, 0.5)
  config.pixel_std = (0.5, 0.5, 0.5)
  config.dtype = 'float32'  # 'bfloat16': convs and matmuls in bfloat16, the rest float32.
  config.label_smoothing = 0.0

  config.batch_size = 64  # Global, over all devices and hosts.
  config.eval_batch_size = 500
  config.num_epochs = 500
  config.learning_rate = 0.1
  # > 0: the rate is learning_rate * batch_size / reference_batch_size (the
  # linear scaling rule), so a smaller batch keeps the recipe's rate per example.
  config.reference_batch_size = 0
  config.lr_schedule = 'piecewise'  # 'piecewise' | 'cosine'
  config.lr_boundaries_epochs = (100, 200, 300, 400)
  config.lr_decay_factor = 0.1
  config.warmup_epochs = 5
  config.warmup_factor = 1.0  # Warmup starts at this times the rate; 1 = no ramp.
  config.momentum = 0.9
  # L2 added to the gradient, as torch.optim.SGD does; kernels only unless
  # weight_decay_on_bn_and_bias.
  config.weight_decay = 1e-4
  config.weight_decay_on_bn_and_bias = False
  config.bias_lr_factor = 1.0  # Learning rate of parameters named bias, relative.

  config.seed = 0
  config.log_every_steps = 100
  config.eval_every_epochs = 10
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  # With several processes, how often they agree whether one was asked to stop:
  # a preemption notice is honoured within this, two steps and a save. Keep it
  # well inside the grace period the cluster gives.
  config.stop_agree_seconds = 10.0
  # Comma-separated formats of acnet_jax.deploy.artifacts (e.g. 'stablehlo,savedmodel')
  # to write DIR/export/ with at the end of training; '' = none.
  config.export_formats = ''
  return config


# Keys that do not change what training computes: how often it logs, evaluates
# and saves, where the data lies and how many threads read it, how evaluation
# batches, how the result is exported. A resume may change these freely.
OUTSIDE_THE_TRAJECTORY = frozenset(
  {
    'log_every_steps',
    'eval_every_epochs',
    'checkpoint_every_steps',
    'keep_checkpoints',
    'stop_agree_seconds',
    'export_formats',
    'data_dir',
    'data_workers',
    'eval_batch_size',
    'eval_split',
    'try_arg',
    'name',
  }
)


def flatten(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """'acb.gamma_init' -> value; sequences as tuples (JSON gives lists)."""

  def walk(tree: dict, prefix: str) -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
      if isinstance(value, dict):
        flat.update(walk(value, f'{prefix}{key}.'))
      else:
        flat[f'{prefix}{key}'] = tuple(value) if isinstance(value, list) else value
    return flat

  return walk(config.to_dict(), '')


def trajectory_changes(
  before: ml_collections.ConfigDict, after: ml_collections.ConfigDict
) -> dict[str, tuple[Any, Any]]:
  """key -> (before, after) for every key that differs and changes what
  training computes (the data order, the schedule, the model, ...)."""
  old, new = flatten(before), flatten(after)
  return {
    key: (old.get(key), new.get(key))
    for key in sorted(old.keys() | new.keys())
    if key not in OUTSIDE_THE_TRAJECTORY and old.get(key) != new.get(key)
  }


POSITIVE_KEYS = (
  'batch_size',
  'eval_batch_size',
  'num_epochs',
  'log_every_steps',
  'eval_every_epochs',
  'checkpoint_every_steps',
  'keep_checkpoints',
  'stop_agree_seconds',
)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops on a bad value before anything is loaded or written."""
  choices = {
    'model': (config.model, sorted(models.MODELS)),
    'conv': (config.conv, TRAINABLE_KINDS),
    'lr_schedule': (config.lr_schedule, LR_SCHEDULES),
    'acb.impl': (config.acb.impl, ACB_IMPLS),
    'pipeline': (config.pipeline, feeds.PIPELINES),
    'dtype': (config.dtype, DTYPES),
  }
  for key, (value, valid) in choices.items():
    if value not in valid:
      raise InputError(f'unknown {key} {value!r}; valid: {", ".join(valid)}')
  feeds.validate_dataset(config)
  artifacts.parse_formats(config.export_formats, config.model)
  for key in POSITIVE_KEYS:
    if not config[key] > 0:
      raise InputError(f'{key} must be positive; got {config[key]!r}')
  validate_branches(config.acb.branches)
  if config.online and config.repvgg.quantization_friendly and config.conv == 'repvgg':
    raise InputError(
      'repvgg.quantization_friendly=True has no online form here: leave online False'
    )
  if config.online and config.conv not in TRAINING_BLOCKS:
    raise InputError(
      f'online=True trains a re-parameterized conv kind ({", ".join(TRAINING_BLOCKS)}) as '
      f'one conv of a kernel built from its branches; conv {config.conv!r} has no branches. '
      'Choose one of those kinds (--config.conv or a try_arg such as acnet_cosine), or '
      'leave online False.'
    )
