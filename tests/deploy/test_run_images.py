"""A run's test and calibration images, as its evaluation sees them, on both
data paths: every test image once, and the training images at the drawn
positions, normalised as the exported function takes them."""

from __future__ import annotations

import numpy as np
import pytest

from acnet_jax.data import feeds, memory
from acnet_jax.data.on_device import normalize
from acnet_jax.data.transforms import decode, resize_shorter_then_center_crop
from acnet_jax.deploy import run_images
from tests.support.images import make_image_folder
from tests.support.runs import folder_config, tiny_config


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """Images of several sizes: the streamed path resizes and crops them."""
  return make_image_folder(
    tmp_path_factory.mktemp('images'),
    4,
    3,
    num_classes=3,
    size=(40, 80),
    varied_modes=False,
    real=False,
  )


def test_in_memory_runs_give_their_split_normalised():
  config = tiny_config(eval_batch_size=5)  # 64 synthetic training images, 16 test images.
  test = memory.load_split(config, memory.dataset_info(config), 'test')
  batches = list(run_images.test_batches(config))
  assert [len(labels) for _, labels in batches] == [5, 5, 5, 1]
  images = np.concatenate([images for images, _ in batches])
  np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), test.labels)
  expected = normalize(test.images, config.pixel_mean, config.pixel_std)
  np.testing.assert_allclose(images, expected, rtol=0, atol=1e-6)

  positions = run_images.calibration_indices(config, 10)
  assert len(set(positions.tolist())) == 10 and positions.max() < 64
  train = memory.load_split(config, memory.dataset_info(config), 'train')
  np.testing.assert_allclose(
    run_images.training_images(config, positions),
    normalize(train.images[positions], config.pixel_mean, config.pixel_std),
    rtol=0,
    atol=1e-6,
  )
  assert len(run_images.calibration_indices(config, 1000)) == 64  # All, where it has fewer.


def test_streamed_runs_give_their_images_cropped_as_evaluation_crops_them(folder):
  config = folder_config(folder, pipeline='stream', image_size=32, eval_batch_size=4)
  train, evaluation = feeds.stream_sources(config)
  positions = run_images.calibration_indices(config, 5)
  crop = lambda source, i: np.asarray(
    resize_shorter_then_center_crop(decode(source[int(i)][0], source.name(int(i))), 32)
  )
  expected = np.stack([crop(train, i) for i in positions])
  np.testing.assert_allclose(
    run_images.training_images(config, positions),
    normalize(expected, config.pixel_mean, config.pixel_std),
    rtol=0,
    atol=1e-6,
  )
  labels = np.concatenate([labels for _, labels in run_images.test_batches(config)])
  np.testing.assert_array_equal(labels, [evaluation[i][1] for i in range(len(evaluation))])
