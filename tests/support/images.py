"""Image folders for tests: `train/<class>/*` and `val/<class>/*` (or `test/`),
from the real CIFAR-10 JPEGs in ../shared where they are, else random images
(a user's clone). One helper for every test that needs a folder.

    python -m tests.support.images /tmp/folder [train_per_class] [eval_per_class]
"""

from __future__ import annotations

import io
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acnet_jax.interop.convert import CIFAR10_CLASSES

ARCHIVE = Path(__file__).parents[3] / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
# Every GRAYSCALE_EVERY-th image is saved in mode L when modes vary.
GRAYSCALE_EVERY = 7


def pil_rgb(path: Path) -> np.ndarray:
  """The image at `path` as PIL decodes it, in RGB: what the pipelines must give."""
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def require_archive() -> Path:
  """The real CIFAR-10 archive; skips the test without it (a failure under
  CI, tests/support/ci_skips.py). Its tests are marked needs_cifar."""
  if not ARCHIVE.exists():
    pytest.skip(f'no real CIFAR-10 archive at {ARCHIVE} (it lives in ../shared beside the repo)')
  return ARCHIVE


def cifar10_members(
  per_split: dict[str, int], classes: tuple[str, ...]
) -> Iterator[tuple[str, str, str, bytes]]:
  """(split, class, file name, JPEG bytes) of the first per_split[split] images
  of each class, with the archive's split names (train, test)."""
  taken: dict[tuple[str, str], int] = {}
  wanted = len(classes) * sum(per_split.values())
  with tarfile.open(ARCHIVE, 'r:gz') as archive:
    for member in archive:
      parts = Path(member.name).parts  # cifar10/<split>/<class>/<file>.jpg
      if not member.isfile() or len(parts) != 4 or parts[2] not in classes:
        continue
      key = (parts[1], parts[2])
      if taken.get(key, 0) < per_split.get(parts[1], 0):
        taken[key] = taken.get(key, 0) + 1
        yield parts[1], parts[2], parts[3], archive.extractfile(member).read()
      if sum(taken.values()) == wanted:
        return


def extract_cifar10(root: Path | str, train_per_class: int, test_per_class: int) -> Path:
  """The archive's own JPEG files (not re-encoded) of the first images of each
  class, as root/{train,test}/<class>/."""
  require_archive()
  root = Path(root)
  for split, label, name, data in cifar10_members(
    {'train': train_per_class, 'test': test_per_class}, CIFAR10_CLASSES
  ):
    (root / split / label).mkdir(parents=True, exist_ok=True)
    (root / split / label / name).write_bytes(data)
  return root


def random_images(
  per_split: dict[str, int], classes: tuple[str, ...], rng: np.random.Generator
) -> Iterator[tuple[str, str, Image.Image]]:
  """Smooth random 32x32 images (upscaled noise compresses like a photo)."""
  for split, count in per_split.items():
    for label in classes:
      for _ in range(count):
        noise = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        yield split, label, Image.fromarray(noise).resize((32, 32), Image.BILINEAR)


def make_image_folder(
  root: Path | str,
  train_per_class: int = 20,
  eval_per_class: int = 10,
  *,
  num_classes: int = 10,
  eval_split: str = 'val',
  size: int | tuple[int, int] = (40, 400),
  varied_modes: bool = True,
  real: bool = True,
  seed: int = 0,
) -> Path:
  """Writes root/train/<class>/* and root/<eval_split>/<class>/* and returns root.

  Images are CIFAR-10's (the first of each class) where ../shared has them and
  `real`, else random; resized to `size` x `size`, or to random sides in the
  range `size`. With `varied_modes` every 7th image is grayscale, the first
  train image is a CMYK JPEG and the second a PNG with an alpha channel.
  """
  root = Path(root)
  rng = np.random.default_rng(seed)
  classes = (
    CIFAR10_CLASSES[:num_classes]
    if real and ARCHIVE.exists()
    else tuple(f'class{i}' for i in range(num_classes))
  )
  per_split = {'train': train_per_class, eval_split: eval_per_class}
  if real and ARCHIVE.exists():
    archive_split = {'train': 'train', eval_split: 'test'}
    members = cifar10_members({archive_split[s]: n for s, n in per_split.items()}, classes)
    names = {v: k for k, v in archive_split.items()}
    images = (
      (names[split], label, Image.open(io.BytesIO(data)).convert('RGB'))
      for split, label, _, data in members
    )
  else:
    images = random_images(per_split, classes, rng)
  written = {split: 0 for split in per_split}
  for n, (split, label, image) in enumerate(images):
    width, height = (
      (size, size)
      if isinstance(size, int)
      else (int(s) for s in rng.integers(size[0], size[1] + 1, 2))
    )
    image = image.resize((width, height), Image.BICUBIC)
    folder = root / split / label
    folder.mkdir(parents=True, exist_ok=True)
    written[split] += 1
    if varied_modes and split == 'train' and written[split] == 1:
      image.convert('CMYK').save(folder / f'{n:05d}.jpg', quality=90)
    elif varied_modes and split == 'train' and written[split] == 2:
      image.putalpha(200)
      image.save(folder / f'{n:05d}.png')
    else:
      if varied_modes and n % GRAYSCALE_EVERY == 0:
        image = image.convert('L')
      image.save(folder / f'{n:05d}.jpg', quality=90)
  return root


if __name__ == '__main__':
  make_image_folder(sys.argv[1], *(int(a) for a in sys.argv[2:]))
