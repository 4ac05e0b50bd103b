"""densenet40 with any try_arg, e.g. --config=configs/densenet40.py:acnet_densenet (or acnet_densenet_cifar100)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_densenet'):
  return presets.preset('densenet40', try_arg)
