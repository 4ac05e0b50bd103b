"""mobilenet_v1, acnet, ImageNet (tfds imagenet2012): the authors' ImageNet recipe (cosine, 100 epochs, batch 256)."""

from acnet_jax.training import presets


def get_config():
  return presets.preset('mobilenet_v1', 'acnet_imagenet')
