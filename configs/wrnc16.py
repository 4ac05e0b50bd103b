"""wrnc16 with any try_arg of the original code: --config=configs/wrnc16.py:acnet_lrs1"""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_lrs2'):
  return presets.preset('wrnc16', try_arg)
