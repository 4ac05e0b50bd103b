"""rc110, acnet, CIFAR-10: the authors' later recipe (cosine). CIFAR-100: configs/rc110.py:acnet_cosine_cifar100."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('rc110', 'acnet_cosine')
