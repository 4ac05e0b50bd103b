"""Image folders: `root/<split>/<class>/*.jpg` (or png), read as torchvision's
ImageFolder reads them: labels follow the sorted class names."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from acnet_jax.errors import InputError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
# The evaluation split of an image folder: `val/`, else `test/`. val wins when
# both exist: ImageNet-style folders keep their labelled held-out data in val/
# (ImageNet's own test images have no labels).
EVAL_SPLITS = ('val', 'test')


def check_class_folders(data_dir: str | None, splits: Sequence[str]) -> list[str]:
  """Stops with a clear message on a missing folder or split, a split without
  class folders, a class folder without images, or splits whose classes
  differ; returns the class names, sorted: the label order."""
  layout = 'a folder holding ' + ' and '.join(f'{split}/<class>/*.jpg' for split in splits)
  if not data_dir or not os.path.isdir(data_dir):
    raise InputError(
      f"dataset 'image_folder' needs data_dir= {layout}; got {data_dir!r}, which is not a folder"
    )
  classes = {}
  for split in splits:
    split_dir = os.path.join(data_dir, split)
    if not os.path.isdir(split_dir):
      raise InputError(f'{data_dir} has no {split}/ folder; it must be {layout}')
    classes[split] = sorted(
      d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d))
    )
    if not classes[split]:
      raise InputError(f'{split_dir} has no class folders; it must be {layout}')
    for label in classes[split]:
      files = os.listdir(os.path.join(split_dir, label))
      if not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
        raise InputError(f'{split_dir}/{label} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
  first = splits[0]
  for split in splits[1:]:
    if classes[split] != classes[first]:
      raise InputError(
        f'the class folders of {data_dir}/{first} and {data_dir}/{split} differ: '
        f'only in {first}: {sorted(set(classes[first]) - set(classes[split]))}, '
        f'only in {split}: {sorted(set(classes[split]) - set(classes[first]))}'
      )
  return classes[first]


class ImageFolderSource:
  """Random access to the encoded images of `root/<split>/<class>/*` (jpg,
  jpeg, png, any case) and their labels."""

  def __init__(self, root: str, split: str):
    self.root = root
    self.split = split
    self.classes = check_class_folders(root, (split,))
    files, labels = [], []
    for label, name in enumerate(self.classes):
      for file in sorted(os.listdir(os.path.join(root, split, name))):
        if file.lower().endswith(IMAGE_EXTENSIONS):
          files.append(os.fsencode(os.path.join(name, file)))
          labels.append(label)
    # Bytes in one array: ImageNet's 1.28M paths as Python strings take ~150 MB.
    self.files = np.array(files)
    self.labels = np.array(labels, np.int32)
    self.num_classes = len(self.classes)

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.classes)

  def __len__(self) -> int:
    return len(self.labels)

  def name(self, index: int) -> str:
    return os.path.join(self.root, self.split, os.fsdecode(self.files[index]))

  def __getitem__(self, index: int) -> tuple[bytes, int]:
    path = self.name(index)
    try:
      with open(path, 'rb') as f:
        return f.read(), int(self.labels[index])
    except OSError as error:
      raise InputError(
        f'cannot read {path} ({error.strerror}); check that the file exists and is readable'
      ) from error


def eval_split_of(root: str) -> str:
  return next(
    (s for s in EVAL_SPLITS if root and os.path.isdir(os.path.join(root, s))), EVAL_SPLITS[0]
  )


def image_folder_sources(root: str) -> tuple[ImageFolderSource, ImageFolderSource]:
  """The train and evaluation splits of `root`, checked to hold the same classes."""
  eval_split = eval_split_of(root)
  check_class_folders(root, ('train', eval_split))
  return ImageFolderSource(root, 'train'), ImageFolderSource(root, eval_split)


def header_size(path: str) -> tuple[int, int] | None:
  """(width, height) from the file's header, without decoding; None if unreadable."""
  try:
    with Image.open(path) as image:
      return image.size
  except Exception:  # PIL raises many kinds; the decoder names the file later.
    return None
