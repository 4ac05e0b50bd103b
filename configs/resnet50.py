"""resnet50 with any try_arg of its recipe: --config=configs/resnet50.py:acnet_imagenet (or normal_imagenet)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_imagenet'):
  return presets.preset('resnet50', try_arg)
