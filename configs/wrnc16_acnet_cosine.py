"""wrnc16, acnet: the authors' later recipe (cosine, 400 epochs)."""

from configs import default


def get_config():
  return default.preset('wrnc16', 'acnet_cosine')
