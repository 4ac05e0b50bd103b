"""The base config and the presets of the original code (configs/*.py call these).

Every knob a run uses is here; presets differ from the base only where they
differ. A preset is named by the original code's `try_arg`: '<conv>_<recipe>'
with conv in {normal, acnet} and recipe in RECIPES.
"""

from __future__ import annotations

import ml_collections

CONVS = ('normal', 'acnet')

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
}
# model: (learning_rate, num_epochs, weight_decay) of the later recipe.
LATER_RECIPE = {
    'cfqkbnc': (0.1, 150, 1e-4), 'vc': (0.1, 400, 1e-4), 'rc20': (0.2, 400, 1e-4),
    'rc56': (0.2, 400, 1e-4), 'rc110': (0.2, 400, 1e-4), 'wrnc16': (0.1, 400, 5e-4),
}
MODELS_OF_PRESETS = (*LATER_RECIPE, 'densenet40')
TRY_ARGS = tuple(f'{conv}_{recipe}' for recipe in RECIPES for conv in CONVS)
CIFAR100_SUFFIX = '_cifar100'


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.try_arg = ''  # The preset this config came from, for the record.

  config.model = 'rc56'
  config.conv = 'acnet'  # 'normal' | 'acnet'
  config.num_classes = 10
  config.acb = ml_collections.ConfigDict()
  config.acb.gamma_init = 1.0  # Initial BN scale of every ACB branch.
  config.acb.use_affine = True
  config.acb.branches = ('square', 'ver', 'hor')
  # 'branches' (a conv per branch) or 'stacked' (one conv, 1D kernels padded
  # to KxK): same parameters, same values; which is faster is measured by
  # `python -m acnet_jax.benchmark` (README, Performance).
  config.acb.impl = 'branches'

  config.dataset = 'cifar10'  # 'cifar10' | 'cifar100' | 'image_folder' | 'synthetic'
  config.data_dir = ''  # tfds data_dir, or the root of an image folder.
  config.max_train_examples = 0  # 0 = all; a random subset for smoke runs.
  config.synthetic_examples = 512
  config.augment = True  # Pad 4, random 32x32 crop, random horizontal flip.

  config.batch_size = 64  # Global, over all devices and hosts.
  config.eval_batch_size = 500
  config.num_epochs = 500
  config.learning_rate = 0.1
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
  if recipe == 'cosine' and model not in LATER_RECIPE:
    raise ValueError(f'the later (cosine) recipe has no settings for {model}; it has them '
                     f'for {", ".join(LATER_RECIPE)}')
  config = get_config()
  config.update(dict(model=model, conv=conv, try_arg=try_arg, dataset=dataset,
                     num_classes=num_classes))
  config.update(RECIPES[recipe])
  if recipe == 'cosine':
    config.learning_rate, config.num_epochs, config.weight_decay = LATER_RECIPE[model]
  if recipe in ('cosine', 'densenet'):
    config.acb.gamma_init = 0.333  # do_acnet.py's value; its README says 1/3.
  return config
