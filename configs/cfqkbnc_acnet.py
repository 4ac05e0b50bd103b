"""cfqkbnc, acnet, CIFAR-10: the authors' later recipe (cosine). CIFAR-100: configs/cfqkbnc.py:acnet_cosine_cifar100."""

from configs import default


def get_config():
  return default.preset('cfqkbnc', 'acnet_cosine')
