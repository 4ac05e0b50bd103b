"""densenet40, acnet, CIFAR-10: the standard DenseNet recipe. CIFAR-100: configs/densenet40.py:acnet_densenet_cifar100."""

from configs import default


def get_config():
  return default.preset('densenet40', 'acnet_densenet')
