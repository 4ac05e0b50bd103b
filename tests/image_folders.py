"""ImageNet-style test folders: `train/<class>/*` and `val/<class>/*` of varied
sizes and modes, from the real CIFAR-10 JPEGs in ../shared (random images where
../shared is absent, e.g. in a user's clone).

    python tests/image_folders.py /tmp/folder [train_per_class] [val_per_class]
"""

from __future__ import annotations

import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

ARCHIVE = Path(__file__).parents[2] / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
NUM_CLASSES = 10
# Every GRAYSCALE_EVERY-th image is saved in mode L.
GRAYSCALE_EVERY = 7


def cifar10_images(per_split: dict[str, int]) -> Iterator[tuple[str, str, Image.Image]]:
  """(split, class, image): the first per_split[split] images of each class
  (the archive's test/ becomes val/)."""
  taken: dict[tuple[str, str], int] = {}
  with tarfile.open(ARCHIVE, 'r:gz') as archive:
    for member in archive:
      parts = Path(member.name).parts  # cifar10/<split>/<class>/<file>.jpg
      if not member.isfile() or len(parts) != 4:
        continue
      split = 'val' if parts[1] == 'test' else parts[1]
      key = (split, parts[2])
      if taken.get(key, 0) < per_split[split]:
        taken[key] = taken.get(key, 0) + 1
        yield split, parts[2], Image.open(archive.extractfile(member)).convert('RGB')
      if sum(taken.values()) == NUM_CLASSES * sum(per_split.values()):
        return


def synthetic_images(per_split: dict[str, int],
                     rng: np.random.Generator) -> Iterator[tuple[str, str, Image.Image]]:
  """Smooth random 32x32 images (upscaled noise compresses like a photo)."""
  for split, count in per_split.items():
    for label in range(NUM_CLASSES):
      for _ in range(count):
        noise = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        yield split, f'class{label}', Image.fromarray(noise).resize((32, 32), Image.BILINEAR)


def make_image_folder(root: Path | str, train_per_class: int = 20, val_per_class: int = 10,
                      seed: int = 0, max_size: int = 400) -> Path:
  """Writes the folder; images are upscaled to random sizes of 40 to max_size px per
  side, every 7th is grayscale, the first train image is a CMYK JPEG and the
  second a PNG with an alpha channel."""
  root = Path(root)
  rng = np.random.default_rng(seed)
  per_split = {'train': train_per_class, 'val': val_per_class}
  images = cifar10_images(per_split) if ARCHIVE.exists() else synthetic_images(per_split, rng)
  written = {'train': 0, 'val': 0}
  for n, (split, label, image) in enumerate(images):
    width, height = (int(s) for s in rng.integers(40, max_size + 1, 2))
    image = image.resize((width, height), Image.BICUBIC)
    folder = root / split / label
    folder.mkdir(parents=True, exist_ok=True)
    written[split] += 1
    if split == 'train' and written[split] == 1:
      image.convert('CMYK').save(folder / f'{n:05d}.jpg', quality=90)
    elif split == 'train' and written[split] == 2:
      image.putalpha(200)
      image.save(folder / f'{n:05d}.png')
    else:
      image = image.convert('L') if n % GRAYSCALE_EVERY == 0 else image
      image.save(folder / f'{n:05d}.jpg', quality=90)
  return root


if __name__ == '__main__':
  make_image_folder(sys.argv[1], *(int(a) for a in sys.argv[2:]))
