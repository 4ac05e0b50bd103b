"""resnet34 with any try_arg of its recipe: --config=configs/resnet34.py:acnet_imagenet (or normal_imagenet)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_imagenet'):
  return presets.preset('resnet34', try_arg)
