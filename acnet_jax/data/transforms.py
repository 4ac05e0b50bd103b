"""Decoding and augmenting on the host, as torchvision does it: PIL decodes,
then RGB; RandomResizedCrop and RandomHorizontalFlip to train, Resize and
CenterCrop to evaluate. The transforms take and return PIL images, as
torchvision's do: array round trips between them would cost ~25% of the host
time per image."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from acnet_jax.errors import InputError

# torchvision's RandomResizedCrop defaults.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def decode(data: bytes, name: str) -> Image.Image:
  """The RGB PIL image, decoded as torchvision's ImageFolder decodes: PIL, then
  RGB, so grayscale, CMYK, palette and RGBA images all become RGB."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return image.convert('RGB')
  except Exception as error:  # PIL raises OSError, ValueError, SyntaxError and its own.
    raise InputError(f'{name} is not a readable image ({error}); remove or replace it') from error


def decode_image(data: bytes, name: str) -> np.ndarray:
  """(height, width, 3) uint8: `decode` as an array."""
  return np.asarray(decode(data, name))


def random_resized_crop_box(
  height: int,
  width: int,
  rng: np.random.Generator,
  scale: tuple[float, float] = CROP_SCALE,
  ratio: tuple[float, float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
  """(top, left, height, width) by torchvision's RandomResizedCrop.get_params:
  10 tries of a uniform area fraction and a log-uniform aspect ratio, then the
  centre crop of the aspect ratio clamped to `ratio`."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
  """torchvision's resized_crop: crop (top, left, height, width), then a PIL
  bilinear resize to size x size (PIL's resize(box=) would differ at the edges)."""
  top, left, height, width = box
  crop = image.crop((left, top, left + width, top + height))
  return crop.resize((size, size), Image.BILINEAR)


def random_resized_crop(
  image: Image.Image,
  rng: np.random.Generator,
  size: int,
  scale: tuple[float, float] = CROP_SCALE,
  ratio: tuple[float, float] = CROP_RATIO,
) -> Image.Image:
  """torchvision's RandomResizedCrop(size, scale, ratio)."""
  box = random_resized_crop_box(image.height, image.width, rng, scale, ratio)
  return resized_crop(image, box, size)


def random_flip(image: Image.Image, rng: np.random.Generator) -> Image.Image:
  """torchvision's RandomHorizontalFlip(p=0.5)."""
  return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def resize_shorter_then_center_crop(
  image: Image.Image, size: int, resize_size: int | None = None
) -> Image.Image:
  """torchvision's Resize(resize_size) + CenterCrop(size); resize_size defaults
  to round(size * 256 / 224), the ImageNet ratio."""
  resize_size = resize_size or round(size * 256 / 224)
  if resize_size < size:
    raise InputError(
      f'the evaluation resize ({resize_size}) must be at least the image size ({size})'
    )
  h, w = image.height, image.width
  # Resize(int) sets the shorter side and truncates the longer one.
  if w <= h:
    new_h, new_w = int(resize_size * h / w), resize_size
  else:
    new_h, new_w = resize_size, int(resize_size * w / h)
  if (new_h, new_w) != (h, w):
    image = image.resize((new_w, new_h), Image.BILINEAR)
  top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
  return image.crop((left, top, left + size, top + size))
