"""rc20 with any try_arg, e.g. --config=configs/rc20.py:acnet_cosine (the deeper model of docs/deploy.md's int8 table)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_cosine'):
  return presets.preset('rc20', try_arg)
