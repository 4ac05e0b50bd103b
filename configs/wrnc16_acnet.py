"""wrnc16, acnet: the original try_arg acnet_lrs2."""

from configs import default


def get_config():
  return default.preset('wrnc16', 'acnet_lrs2')
