"""Data sets held in memory: image folders decoded as PIL decodes them, each
split loaded only when used, and every bad folder named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from acnet_jax.data import memory
from acnet_jax.errors import InputError
from tests.support.images import make_image_folder
from tests.support.runs import folder_config, tiny_config

CLASSES = 3


def small_folder(root, per_class: int = 4):
  """3 classes of random 32x32 JPEGs, train/ and test/."""
  return make_image_folder(
    root,
    per_class,
    per_class,
    num_classes=CLASSES,
    eval_split='test',
    size=32,
    varied_modes=False,
    real=False,
  )


def load(config, split: str) -> memory.Split:
  return memory.load_split(config, memory.dataset_info(config), split)


def test_image_folder_loads_both_splits(tmp_path):
  config = folder_config(small_folder(tmp_path))
  info = memory.dataset_info(config)
  assert info.sizes == {'train': 12, 'test': 12} and info.image_shape == (32, 32, 3)
  assert info.class_names == ('class0', 'class1', 'class2')
  train = load(config, 'train')
  assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8
  assert sorted(np.bincount(load(config, 'test').labels)) == [4, 4, 4]


def test_image_folder_pixels_are_pils(tmp_path):
  """Decoded as torchvision decodes (PIL: libjpeg's accurate integer DCT), not
  as TensorFlow's default (the fast DCT, about one gray level off a pixel)."""
  root = small_folder(tmp_path)
  first = sorted((root / 'train' / 'class0').glob('*.jpg'))[0]
  Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(first)
  train = load(folder_config(root), 'train')
  files = sorted((root / 'train').glob('*/*.jpg'))
  assert len(files) == len(train)
  for path, image in zip(files, train.images):
    with Image.open(path) as reference:
      np.testing.assert_array_equal(image, np.asarray(reference.convert('RGB')), err_msg=path)


def test_a_training_subset_is_random_and_decodes_only_its_images(tmp_path):
  root = small_folder(tmp_path, per_class=10)
  config = folder_config(root, max_train_examples=9)
  kept = memory.split_indices(config, memory.dataset_info(config), 'train')
  files = sorted((root / 'train').glob('*/*.jpg'))
  for index, path in enumerate(files):  # Every image the subset leaves out is unreadable.
    if index not in kept:
      path.write_bytes(b'not an image')
  train = load(config, 'train')
  assert len(train) == 9 and len(set(train.labels)) > 1


def test_evaluation_never_decodes_the_training_split(tmp_path):
  root = small_folder(tmp_path)
  for path in (root / 'train').glob('*/*.jpg'):
    path.write_bytes(b'not an image')
  assert len(load(folder_config(root), 'test')) == 12


def test_synthetic_data_has_the_configured_size_and_is_a_function_of_the_seed():
  config = tiny_config(synthetic_examples=40, image_size=24)
  train = load(config, 'train')
  assert train.images.shape == (40, 24, 24, 3) and len(load(config, 'test')) == 10
  np.testing.assert_array_equal(train.images, load(config, 'train').images)
  assert not np.array_equal(
    train.images, load(tiny_config(synthetic_examples=40, image_size=24, seed=1), 'train').images
  )


def test_bad_dataset_settings_are_explained(tmp_path):
  with pytest.raises(InputError, match='valid datasets: cifar10, cifar100, image_folder'):
    memory.dataset_info(tiny_config(dataset='imagenet'))
  with pytest.raises(InputError, match='needs data_dir'):
    memory.dataset_info(folder_config(tmp_path / 'missing'))
  root = small_folder(tmp_path / 'three')
  with pytest.raises(InputError, match='has 3 classes but the config says num_classes=10'):
    memory.dataset_info(folder_config(root, num_classes=10))
  with pytest.raises(InputError, match="data_dir '.*nowhere' is not a folder: point it at a tfds"):
    memory.dataset_info(tiny_config(dataset='cifar10', data_dir=str(tmp_path / 'nowhere')))


def test_image_folder_without_images_is_refused(tmp_path):
  root = small_folder(tmp_path)
  for image in (root / 'train' / 'class1').iterdir():
    image.unlink()
  with pytest.raises(InputError, match=r'train/class1 holds no images'):
    memory.dataset_info(folder_config(root))


def test_image_folder_with_inconsistent_classes_is_refused(tmp_path):
  root = small_folder(tmp_path)
  (root / 'test' / 'class2').rename(root / 'test' / 'boat')
  with pytest.raises(InputError, match=r"only in train: \['class2'\], only in test: \['boat'\]"):
    memory.dataset_info(folder_config(root))


def test_image_folder_without_evaluation_split_is_refused(tmp_path):
  root = small_folder(tmp_path)
  (root / 'test').rename(root / 'holdout')
  with pytest.raises(InputError, match='has no val/ folder'):
    memory.dataset_info(folder_config(root))


def test_corrupt_image_is_named_and_left_in_place(tmp_path):
  root = small_folder(tmp_path)
  corrupt = sorted((root / 'train' / 'class0').iterdir())[1]
  corrupt.write_bytes(b'not a jpeg at all')
  with pytest.raises(InputError, match=rf'train/class0/{corrupt.name} is not a readable image'):
    load(folder_config(root), 'train')
  assert corrupt.read_bytes() == b'not a jpeg at all'


def test_images_of_another_size_are_named(tmp_path):
  root = small_folder(tmp_path)
  Image.new('RGB', (40, 40)).save(root / 'train' / 'class1' / 'big.jpg')
  with pytest.raises(
    InputError,
    match=r'one size \(most .* are 32x32\); 1 differ, e.g. .*big.jpg'
    r'.*--config.pipeline=stream',
  ):
    load(folder_config(root), 'train')
