"""wrnc16, normal: the original try_arg normal_lrs2."""

from configs import default


def get_config():
  return default.preset('wrnc16', 'normal_lrs2')
