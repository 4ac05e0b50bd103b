"""densenet40, normal, CIFAR-10: the standard DenseNet recipe. CIFAR-100: configs/densenet40.py:normal_densenet_cifar100."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('densenet40', 'normal_densenet')
