"""rc110 with any try_arg, e.g. --config=configs/rc110.py:acnet_cosine (or acnet_cosine_cifar100)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_cosine'):
  return presets.preset('rc110', try_arg)
