"""rc56, acnet: the original try_arg acnet_lrs1."""

from configs import default


def get_config():
  return default.preset('rc56', 'acnet_lrs1')
