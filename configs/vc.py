"""vc with any try_arg, e.g. --config=configs/vc.py:acnet_cosine (or acnet_cosine_cifar100)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_cosine'):
  return presets.preset('vc', try_arg)
