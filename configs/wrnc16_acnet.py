"""wrnc16, acnet: the original try_arg acnet_lrs2."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('wrnc16', 'acnet_lrs2')
