"""rc56, acnet: the original try_arg acnet_lrs1."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('rc56', 'acnet_lrs1')
