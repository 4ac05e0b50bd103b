"""The one face of both input paths: which path a config takes, and the errors
only one path can meet."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from acnet_jax.data import feeds
from acnet_jax.errors import InputError
from acnet_jax.training.trainer import Trainer, create_mesh
from tests.support.images import make_image_folder
from tests.support.runs import folder_config, tiny_config


def sharder() -> feeds.Sharder:
  trainer_mesh = create_mesh()
  replicated = jax.sharding.NamedSharding(trainer_mesh, jax.sharding.PartitionSpec())
  batch = jax.sharding.NamedSharding(trainer_mesh, jax.sharding.PartitionSpec('data'))
  return feeds.Sharder(replicated, batch)


@pytest.fixture(scope='module')
def one_size(tmp_path_factory):
  return make_image_folder(
    tmp_path_factory.mktemp('one_size'),
    4,
    2,
    num_classes=3,
    size=32,
    varied_modes=False,
    real=False,
  )


@pytest.fixture(scope='module')
def mixed_sizes(tmp_path_factory):
  return make_image_folder(
    tmp_path_factory.mktemp('mixed'),
    4,
    2,
    num_classes=3,
    size=(40, 80),
    varied_modes=False,
    real=False,
  )


def test_the_pipeline_is_memory_for_cifar_size_data_and_stream_for_the_rest(one_size, mixed_sizes):
  assert feeds.choose_pipeline(tiny_config()) == 'memory'
  assert feeds.choose_pipeline(tiny_config(dataset='cifar100')) == 'memory'
  assert feeds.choose_pipeline(tiny_config(dataset='imagenet2012')) == 'stream'
  assert feeds.choose_pipeline(folder_config(one_size)) == 'memory'
  assert feeds.choose_pipeline(folder_config(mixed_sizes)) == 'stream'
  assert feeds.choose_pipeline(folder_config(one_size, pipeline='stream')) == 'stream'


def test_a_folder_too_large_for_memory_streams(one_size, monkeypatch):
  monkeypatch.setattr(feeds, 'MEMORY_LIMIT_BYTES', 18 * 32 * 32 * 3 - 1)  # One image short.
  assert feeds.choose_pipeline(folder_config(one_size)) == 'stream'


def test_both_feeds_say_what_the_data_holds(one_size):
  memory_feed = feeds.create_feed(folder_config(one_size), sharder())
  stream_feed = feeds.create_feed(
    folder_config(one_size, pipeline='stream', image_size=24), sharder()
  )
  assert isinstance(memory_feed, feeds.MemoryFeed) and isinstance(stream_feed, feeds.StreamFeed)
  assert memory_feed.class_names == stream_feed.class_names == ('class0', 'class1', 'class2')
  assert (
    (memory_feed.num_train, memory_feed.num_eval)
    == (stream_feed.num_train, stream_feed.num_eval)
    == (12, 6)
  )
  assert memory_feed.image_shape == (32, 32, 3) and stream_feed.image_shape == (24, 24, 3)


@pytest.mark.parametrize(
  'overrides,message',
  [
    (dict(dataset='synthetic', pipeline='stream'), "'synthetic' has no files to stream"),
    (dict(pipeline='stream'), 'crops every image to image_size: set it'),
    (
      dict(pipeline='stream', image_size=16, max_train_examples=5),
      'max_train_examples is for the in-memory pipeline',
    ),
    (
      dict(pipeline='stream', image_size=16, num_classes=10),
      "dataset 'image_folder' has 3 classes but the config says num_classes=10",
    ),
    (
      dict(dataset='imagenet2012', pipeline='memory'),
      "the in-memory pipeline reads .*; 'imagenet2012' streams",
    ),
    (dict(dataset='no_such_data'), "unknown dataset 'no_such_data'; valid: cifar10"),
  ],
)
def test_what_a_path_cannot_do_is_one_paragraph(overrides, message, one_size):
  config = folder_config(one_size, **overrides)
  with pytest.raises(InputError, match=message):
    feeds.create_feed(config, sharder())


def test_memory_batches_are_the_split_gathered_augmented_and_normalised(one_size):
  config = folder_config(one_size, augment=False, batch_size=4)
  trainer = Trainer(config, create_mesh())
  inputs = trainer.train_inputs(0)
  x, y = jax.jit(trainer.feed.prepare_train)(inputs, 0)
  images, labels, indices = (np.asarray(a) for a in inputs)
  np.testing.assert_allclose(np.asarray(x), (images[indices] / 255 - 0.5) / 0.5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(y), labels[indices])
  first = sorted((one_size / 'train').glob('*/*.jpg'))[int(indices[0])]
  with Image.open(first) as image:
    np.testing.assert_array_equal(images[indices[0]], np.asarray(image.convert('RGB')))
