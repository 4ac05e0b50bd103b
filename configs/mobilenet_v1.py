"""mobilenet_v1 with any try_arg of its recipe: --config=configs/mobilenet_v1.py:acnet_imagenet (or normal_imagenet)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_imagenet'):
  return presets.preset('mobilenet_v1', try_arg)
