"""vc, normal, CIFAR-10: the authors' later recipe (cosine). CIFAR-100: configs/vc.py:normal_cosine_cifar100."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('vc', 'normal_cosine')
