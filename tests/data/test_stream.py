"""The streaming input path: batches as pure functions of (seed, step), process
shares, evaluation that counts every example once, tfds array_record sources."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from acnet_jax.data import order, stream, transforms
from acnet_jax.data.image_folder import ImageFolderSource
from acnet_jax.errors import InputError
from tests.data.conftest import TRAIN_PER_CLASS
from tests.support.images import pil_rgb


def train_batches(source, **overrides) -> list[tuple[np.ndarray, np.ndarray]]:
  kwargs = dict(
    seed=0,
    global_batch_size=32,
    steps_per_epoch=len(source) // 32,
    image_size=56,
    start_step=0,
    num_steps=8,
    process_index=0,
    process_count=1,
    num_workers=2,
  )
  return list(stream.train_batches(source, **{**kwargs, **overrides}))


def test_train_batches_have_the_configured_shapes_and_labels(folder):
  source = ImageFolderSource(str(folder), 'train')
  assert len(source) == 10 * TRAIN_PER_CLASS and source.num_classes == 10
  for size in (64, 56):
    images, labels = train_batches(source, image_size=size, num_steps=1)[0]
    assert images.shape == (32, size, size, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    indices = order.train_batch_indices(0, 0, len(source) // 32, 32, len(source))
    np.testing.assert_array_equal(labels, source.labels[indices])


def test_a_restart_at_step_k_sees_the_same_batches(folder):
  source = ImageFolderSource(str(folder), 'train')
  # 6 steps an epoch: steps 4..7 cross into the second epoch.
  full = train_batches(source, num_steps=8)
  resumed = train_batches(source, start_step=4, num_steps=4, num_workers=0)
  for (a_images, a_labels), (b_images, b_labels) in zip(full[4:], resumed, strict=True):
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
  assert not np.array_equal(full[0][0], full[1][0])


def test_process_shares_make_up_the_global_batch(folder):
  source = ImageFolderSource(str(folder), 'train')
  whole = train_batches(source, num_steps=2)
  shares = [train_batches(source, num_steps=2, process_index=p, process_count=2) for p in range(2)]
  for step, (images, labels) in enumerate(whole):
    np.testing.assert_array_equal(images, np.concatenate([s[step][0] for s in shares]))
    np.testing.assert_array_equal(labels, np.concatenate([s[step][1] for s in shares]))
  with pytest.raises(InputError, match='cannot be split evenly over 3 processes'):
    train_batches(source, process_count=3)
  with pytest.raises(InputError, match='at most the 200 training examples'):
    train_batches(source, steps_per_epoch=7)


def test_evaluation_counts_every_example_once(folder):
  source = ImageFolderSource(str(folder), 'val')
  shares = [
    list(
      stream.eval_batches(
        source, global_batch_size=32, image_size=56, process_index=p, process_count=2, num_workers=2
      )
    )
    for p in range(2)
  ]
  assert [len(s) for s in shares] == [4, 4]  # 100 examples: 3 full global batches + 4
  # Global order: batch 0 of process 0, batch 0 of process 1, batch 1 of ...
  ordered = [batch for pair in zip(*shares, strict=True) for batch in pair]
  images, labels, mask = (np.concatenate(field) for field in zip(*ordered, strict=True))
  assert images.shape == (128, 56, 56, 3) and mask.sum() == len(source) and not mask[100:].any()
  np.testing.assert_array_equal(labels[mask], source.labels)
  assert not images[~mask].any()
  first = sorted(folder.glob('val/*/*'))[0]
  expected = transforms.resize_shorter_then_center_crop(Image.open(first).convert('RGB'), 56)
  np.testing.assert_array_equal(images[0], np.asarray(expected))


@pytest.mark.full  # tfds's mock ImageNet; the CIFAR source is tested in the fast tier.
def test_tfds_imagenet_source_under_mock_data():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=40):
    source = stream.tfds_source('imagenet2012', '/nonexistent', 'train')
    assert len(source) == 40 and source.num_classes == 1000
    data, label = source[7]
    assert isinstance(data, bytes) and data[:2] == b'\xff\xd8'  # an encoded JPEG
    assert 0 <= label < 1000
    images, labels = train_batches(source, num_steps=1)[0]
  assert images.shape == (32, 56, 56, 3) and labels.dtype == np.int32


def test_tfds_data_not_prepared_as_array_record_is_explained(tmp_path):
  command = r'`tfds build mnist --data_dir=.* --file_format=array_record`'
  with pytest.raises(
    InputError, match=rf'mnist in .* is not prepared in the array_record .*{command}'
  ):
    stream.tfds_source('mnist', str(tmp_path), 'train')


def test_tfds_source_reads_real_array_record_files(folder, tmp_path):
  import tensorflow_datasets as tfds

  paths = sorted(folder.glob('train/*/*.jpg'))[:12]

  # Not registered: the source finds it from its files, as it would find an
  # ImageNet prepared on another machine.
  with tfds.core.registered.skip_registration():

    class TinyFolder(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version('1.0.0')

      def _info(self):
        return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict(
            {
              'image': tfds.features.Image(encoding_format='jpeg'),
              'label': tfds.features.ClassLabel(num_classes=10),
            }
          ),
        )

      def _split_generators(self, dl_manager):
        return {'train': self._generate_examples()}

      def _generate_examples(self):
        for i, path in enumerate(paths):
          yield i, {'image': path, 'label': i % 10}

  TinyFolder(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  source = stream.tfds_source('tiny_folder', str(tmp_path), 'train')
  assert len(source) == 12 and source.num_classes == 10
  # tfds shuffles the records: match them to the files by their pixels.
  labels = {pil_rgb(path).tobytes(): i % 10 for i, path in enumerate(paths)}
  seen = {}
  for index in range(12):
    data, label = source[index]
    assert isinstance(data, bytes)
    seen[transforms.decode_image(data, source.name(index)).tobytes()] = label
  assert seen == labels
