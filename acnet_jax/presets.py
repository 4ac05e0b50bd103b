"""The base config and the presets of the original code (configs/*.py call these).

Every knob a run uses is here; presets differ from the base only where they
differ. A preset is named by the original code's `try_arg`: '<conv>_<recipe>'
with conv in CONVS (normal, acnet, dbb, repvgg) and recipe in RECIPES; the
original code has the normal_ and acnet_ ones.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from acnet_jax.errors import InputError
from acnet_jax.layers import TRAINABLE_KINDS

CONVS = TRAINABLE_KINDS

# torchvision's normalisation of ImageNet pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The original ACNet code's learning-rate schedules. Its 5-epoch linear
# warmup starts at warmup_factor=1 times the base rate, i.e. there is no ramp:
# we keep the 5 warmup epochs and the factor of 1, which reproduces that.
RECIPES = {
    'lrs1': dict(batch_size=64, weight_decay=1e-4, learning_rate=0.1, num_epochs=500,
                 lr_schedule='piecewise', lr_boundaries_epochs=(100, 200, 300, 400),
                 lr_decay_factor=0.1, warmup_epochs=5, warmup_factor=1.0),
    'lrs2': dict(batch_size=128, weight_decay=5e-4, learning_rate=0.1, num_epochs=360,
                 lr_schedule='piecewise', lr_boundaries_epochs=(90, 180, 240, 300),
                 lr_decay_factor=0.2, warmup_epochs=5, warmup_factor=1.0),
    # The authors' later recipe (acnet/do_acnet.py): cosine decay to 0, no
    # warmup, weight decay on every parameter, twice the learning rate for
    # every parameter named bias, BN scales of ACBs start at 0.333. The rate,
    # epochs and decay depend on the model (LATER_RECIPE).
    'cosine': dict(batch_size=128, lr_schedule='cosine', warmup_epochs=0,
                   weight_decay_on_bn_and_bias=True, bias_lr_factor=2.0),
    # The standard DenseNet recipe (Huang et al. 2017).
    'densenet': dict(batch_size=64, weight_decay=1e-4, learning_rate=0.1, num_epochs=300,
                     lr_schedule='piecewise', lr_boundaries_epochs=(150, 225),
                     lr_decay_factor=0.1, warmup_epochs=0),
    # The authors' ImageNet recipe (do_acnet.py with ndp_train.py): batch 256,
    # lr 0.1 (scaled by batch_size / 256) with cosine decay to 0 over 100
    # epochs, no warmup, weight decay 1e-4 on every parameter, 2x the rate for
    # biases, ACB BN scales start at 1; torchvision's ImageNet preprocessing.
    'imagenet': dict(batch_size=256, eval_batch_size=500, learning_rate=0.1,
                     reference_batch_size=256, num_epochs=100, lr_schedule='cosine',
                     warmup_epochs=0, weight_decay=1e-4, weight_decay_on_bn_and_bias=True,
                     bias_lr_factor=2.0, dataset='imagenet2012', num_classes=1000,
                     image_size=224, pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD,
                     eval_every_epochs=1, checkpoint_every_steps=1000, keep_checkpoints=2),
}
IMAGENET_MODELS = ('resnet18', 'resnet34', 'resnet50', 'mobilenet_v1', 'alexnet')
# model: (learning_rate, num_epochs, weight_decay) of the later recipe.
LATER_RECIPE = {
    'cfqkbnc': (0.1, 150, 1e-4), 'vc': (0.1, 400, 1e-4), 'rc20': (0.2, 400, 1e-4),
    'rc56': (0.2, 400, 1e-4), 'rc110': (0.2, 400, 1e-4), 'wrnc16': (0.1, 400, 5e-4),
}
MODELS_OF_PRESETS = (*LATER_RECIPE, 'densenet40', *IMAGENET_MODELS)
TRY_ARGS = tuple(f'{conv}_{recipe}' for recipe in RECIPES for conv in CONVS)
CIFAR100_SUFFIX = '_cifar100'


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.try_arg = ''  # The preset this config came from, for the record.

  config.model = 'rc56'
  config.conv = 'acnet'  # 'normal' | 'acnet' | 'dbb' | 'repvgg'
  config.num_classes = 10
  config.acb = ml_collections.ConfigDict()  # Options of conv='acnet' only.
  config.acb.gamma_init = 1.0  # Initial BN scale of every ACB branch.
  config.acb.use_affine = True
  config.acb.branches = ('square', 'ver', 'hor')
  # False: the paper's ablation without BN in branches (the branches' convs
  # summed, then one BN); fuses exactly either way.
  config.acb.branch_bn = True
  # 'branches' (a conv per branch) or 'stacked' (one conv, 1D kernels padded
  # to KxK): same parameters, same values; which is faster is measured by
  # `python -m acnet_jax.benchmark` (README, Performance).
  config.acb.impl = 'branches'

  # 'cifar10' | 'cifar100' | 'image_folder' | 'synthetic' | any tfds image
  # classification data set by name (streamed), e.g. 'imagenet2012'.
  config.dataset = 'cifar10'
  config.data_dir = ''  # tfds data_dir, or the root of an image folder.
  # 'memory': both splits as uint8 arrays on every device, augmented there
  # (CIFAR); 'stream': decoded and augmented on host threads while the devices
  # train (ImageNet); 'auto': memory for CIFAR, synthetic data and image
  # folders of one image size that fit in 4 GiB, else stream.
  config.pipeline = 'auto'
  config.image_size = 0  # Streaming: the train crop and eval centre crop; 0 = in memory, as stored.
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
  # Comma-separated formats of acnet_jax.artifacts (e.g. 'stablehlo,savedmodel')
  # to write DIR/export/ with at the end of training; '' = none.
  config.export_formats = ''
  return config


def preset(model: str, try_arg: str) -> ml_collections.ConfigDict:
  """The config of `model` with one of the original code's `try_arg`s:
  '<conv>_<recipe>', and '_cifar100' at the end for CIFAR-100."""
  dataset, num_classes = 'cifar10', 10
  if try_arg.endswith(CIFAR100_SUFFIX):
    try_arg, dataset, num_classes = try_arg[:-len(CIFAR100_SUFFIX)], 'cifar100', 100
  if try_arg not in TRY_ARGS:
    raise ValueError(f'unknown try_arg {try_arg!r} for {model}; valid: {", ".join(TRY_ARGS)}, '
                     f'each also with {CIFAR100_SUFFIX}')
  conv, recipe = try_arg.split('_')
  if (recipe == 'imagenet') != (model in IMAGENET_MODELS):
    raise ValueError(f'the imagenet recipe is for {", ".join(IMAGENET_MODELS)}, which take no '
                     f'other; {model} with {try_arg} is not a preset')
  if recipe == 'imagenet' and dataset != 'cifar10':
    raise ValueError(f'the imagenet recipe trains on imagenet2012; drop {CIFAR100_SUFFIX}')
  if recipe == 'cosine' and model not in LATER_RECIPE:
    raise ValueError(f'the later (cosine) recipe has no settings for {model}; it has them '
                     f'for {", ".join(LATER_RECIPE)}')
  config = get_config()
  config.update(dict(model=model, conv=conv, try_arg=try_arg, dataset=dataset,
                     num_classes=num_classes))
  config.update(RECIPES[recipe])  # The imagenet recipe sets its data set too.
  if recipe == 'cosine':
    config.learning_rate, config.num_epochs, config.weight_decay = LATER_RECIPE[model]
  if recipe in ('cosine', 'densenet'):
    config.acb.gamma_init = 0.333  # do_acnet.py's value; its README says 1/3.
  return config


def run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run used (its workdir's config.json), on top of
  today's defaults, so that runs from before a key existed load too."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise InputError(f'{workdir} is not the --workdir of a training run: it has no config.json '
                     '(python -m acnet_jax.main --mode=train writes one there)')
  try:
    with open(path) as f:
      saved = json.load(f)
  except json.JSONDecodeError as error:
    raise InputError(f'{path} is not the JSON a training run writes: {error}') from None
  config = get_config()
  _merge(config, saved)
  return config


def _merge(config: ml_collections.ConfigDict, saved: dict[str, Any]) -> None:
  for key, value in saved.items():
    if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
      _merge(config[key], value)
    else:  # JSON has no tuples; the config's sequences are tuples.
      config[key] = tuple(value) if isinstance(value, list) else value
