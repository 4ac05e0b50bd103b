"""Host decoding and augmentation, as torchvision does them: PIL's pixels,
torchvision's crop boxes draw for draw, its resize and centre crop."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from acnet_jax.data import transforms
from acnet_jax.errors import InputError
from tests.support.images import pil_rgb


def test_decoded_images_equal_pil_pixel_for_pixel(folder):
  for path in sorted(folder.glob('train/*/*'))[:20]:
    image = transforms.decode_image(path.read_bytes(), str(path))
    np.testing.assert_array_equal(image, pil_rgb(path))


def test_every_mode_comes_out_rgb_uint8(folder):
  modes = {}
  for path in folder.glob('train/*/*'):
    with Image.open(path) as image:
      modes.setdefault(image.mode, path)
  assert set(modes) == {'RGB', 'L', 'CMYK', 'RGBA'}
  palette = io.BytesIO()
  Image.new('RGB', (5, 3), (200, 10, 30)).convert('P').save(palette, format='PNG')
  cases = [(path.read_bytes(), Image.open(path).size) for path in modes.values()]
  for data, (width, height) in cases + [(palette.getvalue(), (5, 3))]:
    image = transforms.decode_image(data, 'case')
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
  gray = transforms.decode_image(modes['L'].read_bytes(), 'gray')
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


class Replay:
  """Hands out draws recorded from torch's generator inside torchvision."""

  def __init__(self, draws: list[float]):
    self.draws = iter(draws)

  def uniform(self, low: float, high: float) -> float:
    return next(self.draws)

  def integers(self, low: int, high: int) -> int:
    return int(next(self.draws))


# torchvision 0.29.1's RandomResizedCrop.get_params: (height, width, scale, ratio,
# the uniform and randint draws it made, its (top, left, height, width)).
TORCHVISION_CROPS = [
  (
    300,
    400,
    (0.08, 1.0),
    (3 / 4, 4 / 3),
    [0.53655606508255, 0.15432526171207428, 23, 47],
    (23, 47, 235, 274),
  ),
  # 6 tries fail on a 60x500 image before a 60x50 crop fits.
  (
    60,
    500,
    (0.08, 1.0),
    (3 / 4, 4 / 3),
    [
      0.53655606508255,
      0.15432526171207428,
      0.1613992303609848,
      -0.21171647310256958,
      0.3628289997577667,
      0.07714410871267319,
      0.5308859348297119,
      0.22810015082359314,
      0.4991777539253235,
      0.07612433284521103,
      0.40098199248313904,
      -0.05654831603169441,
      0.1005396917462349,
      -0.19052669405937195,
      0,
      237,
    ],
    (0, 237, 60, 50),
  ),
]
# Crops that no draw can fit, so every generator falls back to the centre crop:
# aspect ratio clamped to the range (18.5 rounds to 18), or the whole image.
TORCHVISION_FALLBACKS = [
  (50, 50, (0.9, 1.0), (2.0, 3.0), (12, 0, 25, 50)),
  (51, 37, (0.9, 1.0), (2.0, 3.0), (16, 0, 18, 37)),
  (37, 51, (0.9, 1.0), (1 / 3, 1 / 2), (0, 16, 37, 18)),
  (40, 50, (1.5, 2.0), (3 / 4, 4 / 3), (0, 0, 40, 50)),
]


def test_crop_box_is_torchvisions():
  for height, width, scale, ratio, draws, box in TORCHVISION_CROPS:
    assert transforms.random_resized_crop_box(height, width, Replay(draws), scale, ratio) == box
  for height, width, scale, ratio, box in TORCHVISION_FALLBACKS:
    rng = np.random.default_rng(0)
    assert transforms.random_resized_crop_box(height, width, rng, scale, ratio) == box


def test_random_crops_stay_inside_and_vary():
  rng = np.random.default_rng(0)
  boxes = {transforms.random_resized_crop_box(120, 90, rng) for _ in range(200)}
  assert len(boxes) > 150
  for top, left, h, w in boxes:
    assert 0 <= top <= 120 - h and 0 <= left <= 90 - w
    assert 0.08 * 120 * 90 * 0.9 <= h * w and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


@pytest.mark.parametrize('size', [64, 56])
def test_random_resized_crop_is_a_pil_bilinear_resize_of_the_box(size):
  image = np.random.default_rng(1).integers(0, 256, (77, 130, 3), dtype=np.uint8)
  out = np.asarray(
    transforms.random_resized_crop(Image.fromarray(image), np.random.default_rng(2), size)
  )
  top, left, h, w = transforms.random_resized_crop_box(77, 130, np.random.default_rng(2))
  expected = Image.fromarray(image[top : top + h, left : left + w]).resize(
    (size, size), Image.BILINEAR
  )
  assert out.shape == (size, size, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.asarray(expected))


def test_random_flip_mirrors_half_the_time():
  image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
  flipped = [
    np.asarray(transforms.random_flip(image, np.random.default_rng(seed))) for seed in range(40)
  ]
  mirrored = [np.array_equal(f, np.asarray(image)[:, ::-1]) for f in flipped]
  assert all(m or np.array_equal(f, np.asarray(image)) for f, m in zip(flipped, mirrored))
  assert 10 < sum(mirrored) < 30


# torchvision 0.29.1's Resize(round(size * 256 / 224)) + CenterCrop(size):
# (height, width, size, resized height, resized width, top, left).
TORCHVISION_EVAL = [
  (101, 333, 224, 256, 844, 16, 310),
  (333, 101, 64, 240, 73, 88, 4),
  (57, 64, 56, 64, 71, 4, 8),
  (400, 41, 64, 712, 73, 324, 4),
  (240, 320, 224, 256, 341, 16, 58),
  (100, 100, 64, 73, 73, 4, 4),
]


def test_evaluation_resize_and_centre_crop_are_torchvisions():
  rng = np.random.default_rng(0)
  for height, width, size, new_h, new_w, top, left in TORCHVISION_EVAL:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
    expected = np.asarray(resized)[top : top + size, left : left + size]
    out = np.asarray(transforms.resize_shorter_then_center_crop(Image.fromarray(image), size))
    np.testing.assert_array_equal(out, expected)


def test_evaluation_resize_smaller_than_the_crop_is_refused():
  with pytest.raises(InputError, match=r'evaluation resize \(50\) must be at least'):
    transforms.resize_shorter_then_center_crop(Image.new('RGB', (60, 60)), 56, 50)
