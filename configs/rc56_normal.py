"""rc56, normal: the original try_arg normal_lrs1."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('rc56', 'normal_lrs1')
