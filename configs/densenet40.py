"""densenet40 with any try_arg, e.g. --config=configs/densenet40.py:acnet_densenet (or acnet_densenet_cifar100)."""

from configs import default


def get_config(try_arg: str = 'acnet_densenet'):
  return default.preset('densenet40', try_arg)
