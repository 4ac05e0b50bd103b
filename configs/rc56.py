"""rc56 with any try_arg of the original code: --config=configs/rc56.py:acnet_lrs1"""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_lrs1'):
  return presets.preset('rc56', try_arg)
