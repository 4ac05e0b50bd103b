"""Data order, batching, augmentation and the ImageFolder path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from acnet_jax import feeds, input_pipeline
from acnet_jax.errors import InputError


def test_epoch_order_is_a_function_of_seed_and_epoch():
  a = input_pipeline.epoch_permutation(0, 3, 100)
  np.testing.assert_array_equal(a, input_pipeline.epoch_permutation(0, 3, 100))
  assert not np.array_equal(a, input_pipeline.epoch_permutation(0, 4, 100))
  assert not np.array_equal(a, input_pipeline.epoch_permutation(1, 3, 100))
  assert sorted(a) == list(range(100))


def test_training_drops_the_last_partial_batch():
  # 10 examples, batch 3: 3 steps an epoch; example order restarts at step 3.
  steps = [input_pipeline.train_batch_indices(0, s, 3, 3, 10) for s in range(3)]
  seen = np.concatenate(steps)
  assert len(seen) == 9 and len(set(seen)) == 9
  np.testing.assert_array_equal(input_pipeline.train_batch_indices(0, 3, 3, 3, 10),
                                input_pipeline.epoch_permutation(0, 1, 10)[:3])


def test_evaluation_counts_every_example_once():
  batches = input_pipeline.eval_batches(10, 4)
  assert all(len(i) == 4 for i, _ in batches)
  counted = np.concatenate([i[m] for i, m in batches])
  np.testing.assert_array_equal(counted, np.arange(10))


def test_augment_crops_a_shifted_window_and_flips():
  images = jnp.arange(2 * 32 * 32 * 3, dtype=jnp.int32).reshape(2, 32, 32, 3).astype(jnp.uint8)
  out = input_pipeline.augment(images, jax.random.key(0))
  assert out.shape == images.shape and out.dtype == images.dtype
  padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
  for n in range(2):
    windows = [padded[n, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    windows += [w[:, ::-1] for w in windows]
    assert any(np.array_equal(np.asarray(out[n]), w) for w in windows)
  # Over many images both flips and several offsets occur.
  many = input_pipeline.augment(jnp.tile(images[:1], (64, 1, 1, 1)), jax.random.key(1))
  assert len({np.asarray(m).tobytes() for m in many}) > 10


def test_normalize_is_per_channel():
  x = feeds.normalize(jnp.array([[0, 255, 51]], jnp.uint8), (0.5, 0.5, 0.2), (0.5, 0.25, 0.1))
  np.testing.assert_allclose(x, [[-1.0, 2.0, 0.0]], atol=1e-6)


def make_image_folder(root, classes=('cat', 'dog', 'ship'), per_class=4, size=32):
  rng = np.random.default_rng(0)
  for split in ('train', 'test'):
    for label in classes:
      folder = root / split / label
      folder.mkdir(parents=True)
      for i in range(per_class):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f'{i}.jpg')
  return root


def test_image_folder_loads_both_splits(tmp_path):
  root = make_image_folder(tmp_path)
  dataset = input_pipeline.load_dataset('image_folder', str(root), 3, seed=0)
  assert dataset.train.images.shape == (12, 32, 32, 3)
  assert dataset.train.images.dtype == np.uint8
  assert sorted(np.bincount(dataset.test.labels)) == [4, 4, 4]


def test_image_folder_pixels_are_pils(tmp_path):
  """Decoded as torchvision decodes (PIL: libjpeg's accurate integer DCT), not
  as TensorFlow's default (the fast DCT, about one gray level off a pixel)."""
  root = make_image_folder(tmp_path)
  Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(
      root / 'train' / 'cat' / '0.jpg')
  dataset = input_pipeline.load_dataset('image_folder', str(root), 3, seed=0)
  files = sorted((root / 'train').glob('*/*.jpg'))
  assert len(files) == len(dataset.train)
  for path, image in zip(files, dataset.train.images):
    with Image.open(path) as reference:
      np.testing.assert_array_equal(image, np.asarray(reference.convert('RGB')), err_msg=path)


def test_subset_is_random_not_the_first_examples(tmp_path):
  root = make_image_folder(tmp_path, per_class=10)
  dataset = input_pipeline.load_dataset('image_folder', str(root), 3, seed=0,
                                        max_train_examples=9)
  assert len(dataset.train) == 9 and len(set(dataset.train.labels)) > 1


def test_bad_dataset_settings_are_explained(tmp_path):
  with pytest.raises(ValueError, match='valid datasets: cifar10, cifar100, image_folder'):
    input_pipeline.load_dataset('imagenet', None, 10, 0)
  with pytest.raises(InputError, match='needs data_dir'):
    input_pipeline.load_dataset('image_folder', str(tmp_path / 'missing'), 10, 0)
  root = make_image_folder(tmp_path / 'three')
  with pytest.raises(ValueError, match='has 3 classes but the config says num_classes=10'):
    input_pipeline.load_dataset('image_folder', str(root), 10, 0)


def test_image_folder_without_images_is_refused(tmp_path):
  root = make_image_folder(tmp_path / 'data')
  for image in (root / 'train' / 'dog').iterdir():
    image.unlink()
  with pytest.raises(InputError, match=r'train/dog holds no images'):
    input_pipeline.load_dataset('image_folder', str(root), 3, 0)


def test_image_folder_with_inconsistent_classes_is_refused(tmp_path):
  root = make_image_folder(tmp_path / 'data')
  (root / 'test' / 'ship').rename(root / 'test' / 'boat')
  with pytest.raises(InputError, match=r"only in train: \['ship'\], only in test: \['boat'\]"):
    input_pipeline.load_dataset('image_folder', str(root), 3, 0)


def test_image_folder_without_evaluation_split_is_refused(tmp_path):
  root = make_image_folder(tmp_path / 'data')
  (root / 'test').rename(root / 'holdout')
  with pytest.raises(InputError, match='has no val/ folder'):
    input_pipeline.load_dataset('image_folder', str(root), 3, 0)


def test_corrupt_image_is_named(tmp_path):
  root = make_image_folder(tmp_path / 'data')
  (root / 'train' / 'cat' / '1.jpg').write_bytes(b'not a jpeg at all')
  before = sorted(p.name for p in (root / 'train' / 'cat').iterdir())
  with pytest.raises(InputError, match=r'train/cat/1.jpg is not a readable image'):
    input_pipeline.load_dataset('image_folder', str(root), 3, 0)
  assert sorted(p.name for p in (root / 'train' / 'cat').iterdir()) == before


def test_images_of_another_size_are_named(tmp_path):
  root = make_image_folder(tmp_path / 'data')
  Image.new('RGB', (40, 40)).save(root / 'train' / 'dog' / 'big.jpg')
  with pytest.raises(InputError, match=r'one size \(most .* are 32x32\); 1 differ, e.g. .*big.jpg'
                                       r'.*--config.pipeline=stream'):
    input_pipeline.load_dataset('image_folder', str(root), 3, 0)


def test_a_tfds_dataset_that_cannot_be_downloaded_is_one_paragraph(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds

  def no_network(self, *args, **kwargs):
    raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', no_network)
  with pytest.raises(InputError, match=r"tfds could not download or prepare 'cifar10' .*"
                                       r"ConnectionError: Failed to resolve.*Without internet"):
    input_pipeline.load_dataset('cifar10', str(tmp_path), 10, seed=0)
