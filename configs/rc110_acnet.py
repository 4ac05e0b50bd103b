"""rc110, acnet, CIFAR-10: the authors' later recipe (cosine). CIFAR-100: configs/rc110.py:acnet_cosine_cifar100."""

from configs import default


def get_config():
  return default.preset('rc110', 'acnet_cosine')
