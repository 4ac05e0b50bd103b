"""rc56, normal: the authors' later recipe (cosine, 400 epochs)."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('rc56', 'normal_cosine')
