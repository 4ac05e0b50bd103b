"""wrnc16, normal: the original try_arg normal_lrs2."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('wrnc16', 'normal_lrs2')
