"""rc56, acnet: the authors' later recipe (cosine, 400 epochs)."""

from configs import default


def get_config():
  return default.preset('rc56', 'acnet_cosine')
