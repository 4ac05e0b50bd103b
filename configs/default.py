"""The base config, every knob at its default: --config=configs/default.py"""

from acnet_jax import presets


def get_config():
  return presets.get_config()
