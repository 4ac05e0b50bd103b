"""vc, acnet, CIFAR-10: the authors' later recipe (cosine). CIFAR-100: configs/vc.py:acnet_cosine_cifar100."""

from configs import default


def get_config():
  return default.preset('vc', 'acnet_cosine')
