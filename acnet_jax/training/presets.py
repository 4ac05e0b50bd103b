"""The presets: one record per model and recipe (`PRESETS`), holding every
config value its recipe sets, and `preset`, which turns a record into a config
(configs/*.py call it). The README's preset table is rendered from the records
(tests/support/preset_table.py) and tested against them.

A preset is named by the original code's `try_arg`: '<conv>_<recipe>' with
conv in CONVS (normal, acnet, dbb, repvgg; the original code has the normal_
and acnet_ ones), and '_cifar100' at the end of a CIFAR-10 one trains on
CIFAR-100. The config records it in `try_arg` (without the suffix: `dataset`
says which).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

import ml_collections

from acnet_jax.blocks.switch import TRAINABLE_KINDS
from acnet_jax.training.config import get_config

CONVS = TRAINABLE_KINDS
CIFAR100_SUFFIX = '_cifar100'
CIFAR100 = {'dataset': 'cifar100', 'num_classes': 100}


@dataclasses.dataclass(frozen=True)
class Preset:
  """One model's recipe: every config value it sets (keys as --config.KEY
  names them); the other keys keep `config.get_config()`'s defaults."""

  model: str
  recipe: str
  values: Mapping[str, Any]

  def __post_init__(self) -> None:
    # Rows share their recipe's dict; a read-only copy keeps one row's values its own.
    object.__setattr__(self, 'values', types.MappingProxyType(dict(self.values)))

  @property
  def try_args(self) -> tuple[str, ...]:
    return tuple(f'{conv}_{self.recipe}' for conv in CONVS)

  @property
  def trains_on_cifar10(self) -> bool:
    """Whether '_cifar100' at the end of its try_arg may switch it to CIFAR-100."""
    return self.values.get('dataset', get_config().dataset) == 'cifar10'


# The original code's learning-rate schedules. Its 5-epoch linear warmup starts
# at warmup_factor=1 times the base rate, i.e. there is no ramp: the 5 warmup
# epochs and the factor of 1 reproduce that.
LRS1 = {
  'batch_size': 64,
  'weight_decay': 1e-4,
  'learning_rate': 0.1,
  'num_epochs': 500,
  'lr_schedule': 'piecewise',
  'lr_boundaries_epochs': (100, 200, 300, 400),
  'lr_decay_factor': 0.1,
  'warmup_epochs': 5,
  'warmup_factor': 1.0,
}
LRS2 = {
  'batch_size': 128,
  'weight_decay': 5e-4,
  'learning_rate': 0.1,
  'num_epochs': 360,
  'lr_schedule': 'piecewise',
  'lr_boundaries_epochs': (90, 180, 240, 300),
  'lr_decay_factor': 0.2,
  'warmup_epochs': 5,
  'warmup_factor': 1.0,
}
# The authors' later recipe (acnet/do_acnet.py): cosine decay to 0, no warmup,
# weight decay on every parameter, twice the learning rate for every parameter
# named bias, BN scales of ACBs from 0.333 (its README says 1/3). The rate,
# epochs and weight decay are the model's (its row in PRESETS).
LATER = {
  'batch_size': 128,
  'lr_schedule': 'cosine',
  'warmup_epochs': 0,
  'weight_decay_on_bn_and_bias': True,
  'bias_lr_factor': 2.0,
  'acb.gamma_init': 0.333,
}
# The standard DenseNet recipe (Huang et al. 2017). The original code trains it
# without ACBs; the ACB BN scales start at the later recipe's 0.333.
DENSENET = {
  'batch_size': 64,
  'weight_decay': 1e-4,
  'learning_rate': 0.1,
  'num_epochs': 300,
  'lr_schedule': 'piecewise',
  'lr_boundaries_epochs': (150, 225),
  'lr_decay_factor': 0.1,
  'warmup_epochs': 0,
  'acb.gamma_init': 0.333,
}
# The authors' ImageNet recipe (do_acnet.py with ndp_train.py): batch 256, lr
# 0.1 (scaled by batch_size / 256) with cosine decay to 0 over 100 epochs, no
# warmup, weight decay 1e-4 on every parameter, 2x the rate for biases, ACB BN
# scales from 1; torchvision's ImageNet preprocessing (its mean and std of
# pixels in [0, 1]).
IMAGENET = {
  'batch_size': 256,
  'eval_batch_size': 500,
  'learning_rate': 0.1,
  'reference_batch_size': 256,
  'num_epochs': 100,
  'lr_schedule': 'cosine',
  'warmup_epochs': 0,
  'weight_decay': 1e-4,
  'weight_decay_on_bn_and_bias': True,
  'bias_lr_factor': 2.0,
  'dataset': 'imagenet2012',
  'num_classes': 1000,
  'image_size': 224,
  'pixel_mean': (0.485, 0.456, 0.406),
  'pixel_std': (0.229, 0.224, 0.225),
  'eval_every_epochs': 1,
  'checkpoint_every_steps': 1000,
  'keep_checkpoints': 2,
}


def later(learning_rate: float, num_epochs: int, weight_decay: float) -> dict[str, Any]:
  """The later recipe with a model's rate, epochs and weight decay."""
  return {
    **LATER,
    'learning_rate': learning_rate,
    'num_epochs': num_epochs,
    'weight_decay': weight_decay,
  }


# One row per model and recipe; a model's recipes in this order.
PRESETS = (
  Preset('cfqkbnc', 'lrs1', LRS1),
  Preset('cfqkbnc', 'lrs2', LRS2),
  Preset('cfqkbnc', 'cosine', later(learning_rate=0.1, num_epochs=150, weight_decay=1e-4)),
  Preset('cfqkbnc', 'densenet', DENSENET),
  Preset('vc', 'lrs1', LRS1),
  Preset('vc', 'lrs2', LRS2),
  Preset('vc', 'cosine', later(learning_rate=0.1, num_epochs=400, weight_decay=1e-4)),
  Preset('vc', 'densenet', DENSENET),
  Preset('rc20', 'lrs1', LRS1),
  Preset('rc20', 'lrs2', LRS2),
  Preset('rc20', 'cosine', later(learning_rate=0.2, num_epochs=400, weight_decay=1e-4)),
  Preset('rc20', 'densenet', DENSENET),
  Preset('rc56', 'lrs1', LRS1),
  Preset('rc56', 'lrs2', LRS2),
  Preset('rc56', 'cosine', later(learning_rate=0.2, num_epochs=400, weight_decay=1e-4)),
  Preset('rc56', 'densenet', DENSENET),
  Preset('rc110', 'lrs1', LRS1),
  Preset('rc110', 'lrs2', LRS2),
  Preset('rc110', 'cosine', later(learning_rate=0.2, num_epochs=400, weight_decay=1e-4)),
  Preset('rc110', 'densenet', DENSENET),
  Preset('wrnc16', 'lrs1', LRS1),
  Preset('wrnc16', 'lrs2', LRS2),
  Preset('wrnc16', 'cosine', later(learning_rate=0.1, num_epochs=400, weight_decay=5e-4)),
  Preset('wrnc16', 'densenet', DENSENET),
  Preset('densenet40', 'lrs1', LRS1),
  Preset('densenet40', 'lrs2', LRS2),
  Preset('densenet40', 'densenet', DENSENET),
  Preset('resnet18', 'imagenet', IMAGENET),
  Preset('resnet34', 'imagenet', IMAGENET),
  Preset('resnet50', 'imagenet', IMAGENET),
  Preset('mobilenet_v1', 'imagenet', IMAGENET),
  Preset('alexnet', 'imagenet', IMAGENET),
)
BY_NAME = {(row.model, row.recipe): row for row in PRESETS}
MODELS_OF_PRESETS = tuple(dict.fromkeys(row.model for row in PRESETS))
IMAGENET_MODELS = tuple(row.model for row in PRESETS if row.recipe == 'imagenet')


def recipes_of(model: str) -> tuple[str, ...]:
  return tuple(row.recipe for row in PRESETS if row.model == model)


def find_preset(model: str, try_arg: str) -> tuple[Preset, str, bool]:
  """The row, conv kind and whether CIFAR-100 of `model` with `try_arg`;
  ValueError naming the valid ones otherwise."""
  if model not in MODELS_OF_PRESETS:
    raise ValueError(
      f'no presets for {model}; the models with presets: {", ".join(MODELS_OF_PRESETS)}'
    )
  base = try_arg.removesuffix(CIFAR100_SUFFIX)
  conv, _, recipe = base.partition('_')
  row = BY_NAME.get((model, recipe))
  if row is None or conv not in CONVS:
    models_rows = [BY_NAME[model, name] for name in recipes_of(model)]
    suffix = f' (each also with {CIFAR100_SUFFIX})' if models_rows[0].trains_on_cifar10 else ''
    valid = ', '.join(arg for each in models_rows for arg in each.try_args)
    raise ValueError(f'unknown try_arg {try_arg!r} for {model}; valid: {valid}{suffix}')
  cifar100 = base != try_arg
  if cifar100 and not row.trains_on_cifar10:
    raise ValueError(
      f'{model} {base} trains on {row.values["dataset"]}: {CIFAR100_SUFFIX} is for the '
      'CIFAR-10 presets'
    )
  return row, conv, cifar100


def preset(model: str, try_arg: str) -> ml_collections.ConfigDict:
  """The config of `model` with one of the original code's `try_arg`s:
  '<conv>_<recipe>', and '_cifar100' at the end for CIFAR-100."""
  row, conv, cifar100 = find_preset(model, try_arg)
  config = get_config()
  config.update_from_flattened_dict(
    {
      'model': model,
      'conv': conv,
      'try_arg': try_arg.removesuffix(CIFAR100_SUFFIX),
      **row.values,
      **(CIFAR100 if cifar100 else {}),
    }
  )
  return config
