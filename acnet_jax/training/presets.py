"""The presets of the original code (configs/*.py call `preset`).

A preset is the base config (`config.get_config`) changed where the recipe
differs. It is named by the original code's `try_arg`: '<conv>_<recipe>' with
conv in CONVS (normal, acnet, dbb, repvgg) and recipe in RECIPES; the
original code has the normal_ and acnet_ ones.
"""

from __future__ import annotations

import ml_collections

from acnet_jax.blocks.switch import TRAINABLE_KINDS
from acnet_jax.training.config import get_config

CONVS = TRAINABLE_KINDS

# torchvision's normalisation of ImageNet pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The original ACNet code's learning-rate schedules. Its 5-epoch linear
# warmup starts at warmup_factor=1 times the base rate, i.e. there is no ramp:
# we keep the 5 warmup epochs and the factor of 1, which reproduces that.
RECIPES = {
  'lrs1': dict(
    batch_size=64,
    weight_decay=1e-4,
    learning_rate=0.1,
    num_epochs=500,
    lr_schedule='piecewise',
    lr_boundaries_epochs=(100, 200, 300, 400),
    lr_decay_factor=0.1,
    warmup_epochs=5,
    warmup_factor=1.0,
  ),
  'lrs2': dict(
    batch_size=128,
    weight_decay=5e-4,
    learning_rate=0.1,
    num_epochs=360,
    lr_schedule='piecewise',
    lr_boundaries_epochs=(90, 180, 240, 300),
    lr_decay_factor=0.2,
    warmup_epochs=5,
    warmup_factor=1.0,
  ),
  # The authors' later recipe (acnet/do_acnet.py): cosine decay to 0, no
  # warmup, weight decay on every parameter, twice the learning rate for
  # every parameter named bias, BN scales of ACBs start at 0.333. The rate,
  # epochs and decay depend on the model (LATER_RECIPE).
  'cosine': dict(
    batch_size=128,
    lr_schedule='cosine',
    warmup_epochs=0,
    weight_decay_on_bn_and_bias=True,
    bias_lr_factor=2.0,
  ),
  # The standard DenseNet recipe (Huang et al. 2017).
  'densenet': dict(
    batch_size=64,
    weight_decay=1e-4,
    learning_rate=0.1,
    num_epochs=300,
    lr_schedule='piecewise',
    lr_boundaries_epochs=(150, 225),
    lr_decay_factor=0.1,
    warmup_epochs=0,
  ),
  # The authors' ImageNet recipe (do_acnet.py with ndp_train.py): batch 256,
  # lr 0.1 (scaled by batch_size / 256) with cosine decay to 0 over 100
  # epochs, no warmup, weight decay 1e-4 on every parameter, 2x the rate for
  # biases, ACB BN scales start at 1; torchvision's ImageNet preprocessing.
  'imagenet': dict(
    batch_size=256,
    eval_batch_size=500,
    learning_rate=0.1,
    reference_batch_size=256,
    num_epochs=100,
    lr_schedule='cosine',
    warmup_epochs=0,
    weight_decay=1e-4,
    weight_decay_on_bn_and_bias=True,
    bias_lr_factor=2.0,
    dataset='imagenet2012',
    num_classes=1000,
    image_size=224,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    eval_every_epochs=1,
    checkpoint_every_steps=1000,
    keep_checkpoints=2,
  ),
}
IMAGENET_MODELS = ('resnet18', 'resnet34', 'resnet50', 'mobilenet_v1', 'alexnet')
# model: (learning_rate, num_epochs, weight_decay) of the later recipe.
LATER_RECIPE = {
  'cfqkbnc': (0.1, 150, 1e-4),
  'vc': (0.1, 400, 1e-4),
  'rc20': (0.2, 400, 1e-4),
  'rc56': (0.2, 400, 1e-4),
  'rc110': (0.2, 400, 1e-4),
  'wrnc16': (0.1, 400, 5e-4),
}
MODELS_OF_PRESETS = (*LATER_RECIPE, 'densenet40', *IMAGENET_MODELS)
TRY_ARGS = tuple(f'{conv}_{recipe}' for recipe in RECIPES for conv in CONVS)
CIFAR100_SUFFIX = '_cifar100'


def recipes_of(model: str) -> tuple[str, ...]:
  """The recipes a model's presets take: the ImageNet one for the ImageNet
  models, the CIFAR ones for the others (the later recipe where it has settings)."""
  if model in IMAGENET_MODELS:
    return ('imagenet',)
  return tuple(r for r in RECIPES if r != 'imagenet' and (r != 'cosine' or model in LATER_RECIPE))


def preset(model: str, try_arg: str) -> ml_collections.ConfigDict:
  """The config of `model` with one of the original code's `try_arg`s:
  '<conv>_<recipe>', and '_cifar100' at the end for CIFAR-100."""
  dataset, num_classes = 'cifar10', 10
  if try_arg.endswith(CIFAR100_SUFFIX):
    try_arg, dataset, num_classes = try_arg[: -len(CIFAR100_SUFFIX)], 'cifar100', 100
  if try_arg not in TRY_ARGS:
    raise ValueError(
      f'unknown try_arg {try_arg!r} for {model}; valid: {", ".join(TRY_ARGS)}, '
      f'each also with {CIFAR100_SUFFIX}'
    )
  conv, recipe = try_arg.split('_')
  if (recipe == 'imagenet') != (model in IMAGENET_MODELS):
    raise ValueError(
      f'the imagenet recipe is for {", ".join(IMAGENET_MODELS)}, which take no '
      f'other; {model} with {try_arg} is not a preset'
    )
  if recipe == 'imagenet' and dataset != 'cifar10':
    raise ValueError(f'the imagenet recipe trains on imagenet2012; drop {CIFAR100_SUFFIX}')
  if recipe == 'cosine' and model not in LATER_RECIPE:
    raise ValueError(
      f'the later (cosine) recipe has no settings for {model}; it has them '
      f'for {", ".join(LATER_RECIPE)}'
    )
  config = get_config()
  config.update(
    dict(model=model, conv=conv, try_arg=try_arg, dataset=dataset, num_classes=num_classes)
  )
  config.update(RECIPES[recipe])  # The imagenet recipe sets its data set too.
  if recipe == 'cosine':
    config.learning_rate, config.num_epochs, config.weight_decay = LATER_RECIPE[model]
  if recipe in ('cosine', 'densenet'):
    config.acb.gamma_init = 0.333  # do_acnet.py's value; its README says 1/3.
  return config
