"""rc56, normal: the original try_arg normal_lrs1."""

from configs import default


def get_config():
  return default.preset('rc56', 'normal_lrs1')
