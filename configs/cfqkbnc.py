"""cfqkbnc with any try_arg, e.g. --config=configs/cfqkbnc.py:acnet_cosine (or acnet_cosine_cifar100)."""

from acnet_jax.training import presets


def get_config(try_arg: str = 'acnet_cosine'):
  return presets.preset('cfqkbnc', try_arg)
