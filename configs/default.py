"""The base config, every knob at its default: --config=configs/default.py"""

from acnet_jax.training.config import get_config  # noqa: F401  (config_flags calls it)
