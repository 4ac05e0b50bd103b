"""The streaming input path: decoding and augmentation as torchvision does them,
batches as pure functions of (seed, step), sharding, evaluation, bad inputs, tfds."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from acnet_jax import input_pipeline, streaming
from acnet_jax.errors import InputError
from image_folders import make_image_folder

TRAIN_PER_CLASS, VAL_PER_CLASS = 20, 10


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
  return make_image_folder(tmp_path_factory.mktemp('images') / 'data', TRAIN_PER_CLASS,
                           VAL_PER_CLASS)


@pytest.fixture
def scratch(folder, tmp_path) -> Path:
  """A copy of the folder that a test may break."""
  return Path(shutil.copytree(folder, tmp_path / 'data'))


def class_names(root: Path) -> list[str]:
  return sorted(p.name for p in (root / 'train').iterdir())


def pil_rgb(path: Path) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(image.convert('RGB'))


def train_batches(source, **overrides) -> list[tuple[np.ndarray, np.ndarray]]:
  kwargs = dict(seed=0, global_batch_size=32, steps_per_epoch=len(source) // 32, image_size=56,
                start_step=0, num_steps=8, process_index=0, process_count=1, num_workers=2)
  return list(streaming.train_batches(source, **{**kwargs, **overrides}))


# ------------------------------------------------------------------ decoding

def test_decoded_images_equal_pil_pixel_for_pixel(folder):
  for path in sorted(folder.glob('train/*/*'))[:20]:
    image = streaming.decode_image(path.read_bytes(), str(path))
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
    image = streaming.decode_image(data, 'case')
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
  gray = streaming.decode_image(modes['L'].read_bytes(), 'gray')
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


# -------------------------------------------------------------- augmentation

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
    (300, 400, (0.08, 1.0), (3 / 4, 4 / 3), [0.53655606508255, 0.15432526171207428, 23, 47],
     (23, 47, 235, 274)),
    # 6 tries fail on a 60x500 image before a 60x50 crop fits.
    (60, 500, (0.08, 1.0), (3 / 4, 4 / 3),
     [0.53655606508255, 0.15432526171207428, 0.1613992303609848, -0.21171647310256958,
      0.3628289997577667, 0.07714410871267319, 0.5308859348297119, 0.22810015082359314,
      0.4991777539253235, 0.07612433284521103, 0.40098199248313904, -0.05654831603169441,
      0.1005396917462349, -0.19052669405937195, 0, 237], (0, 237, 60, 50)),
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
    assert streaming.random_resized_crop_box(height, width, Replay(draws), scale, ratio) == box
  for height, width, scale, ratio, box in TORCHVISION_FALLBACKS:
    rng = np.random.default_rng(0)
    assert streaming.random_resized_crop_box(height, width, rng, scale, ratio) == box


def test_random_crops_stay_inside_and_vary():
  rng = np.random.default_rng(0)
  boxes = {streaming.random_resized_crop_box(120, 90, rng) for _ in range(200)}
  assert len(boxes) > 150
  for top, left, h, w in boxes:
    assert 0 <= top <= 120 - h and 0 <= left <= 90 - w
    assert 0.08 * 120 * 90 * 0.9 <= h * w and 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


@pytest.mark.parametrize('size', [64, 56])
def test_random_resized_crop_is_a_pil_bilinear_resize_of_the_box(size):
  image = np.random.default_rng(1).integers(0, 256, (77, 130, 3), dtype=np.uint8)
  out = np.asarray(streaming.random_resized_crop(Image.fromarray(image), np.random.default_rng(2),
                                                size))
  top, left, h, w = streaming.random_resized_crop_box(77, 130, np.random.default_rng(2))
  expected = Image.fromarray(image[top:top + h, left:left + w]).resize((size, size),
                                                                       Image.BILINEAR)
  assert out.shape == (size, size, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.asarray(expected))


def test_random_flip_mirrors_half_the_time():
  image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8))
  flipped = [np.asarray(streaming.random_flip(image, np.random.default_rng(seed)))
             for seed in range(40)]
  mirrored = [np.array_equal(f, np.asarray(image)[:, ::-1]) for f in flipped]
  assert all(m or np.array_equal(f, np.asarray(image)) for f, m in zip(flipped, mirrored))
  assert 10 < sum(mirrored) < 30


# torchvision 0.29.1's Resize(round(size * 256 / 224)) + CenterCrop(size):
# (height, width, size, resized height, resized width, top, left).
TORCHVISION_EVAL = [
    (101, 333, 224, 256, 844, 16, 310), (333, 101, 64, 240, 73, 88, 4),
    (57, 64, 56, 64, 71, 4, 8), (400, 41, 64, 712, 73, 324, 4),
    (240, 320, 224, 256, 341, 16, 58), (100, 100, 64, 73, 73, 4, 4),
]


def test_evaluation_resize_and_centre_crop_are_torchvisions():
  rng = np.random.default_rng(0)
  for height, width, size, new_h, new_w, top, left in TORCHVISION_EVAL:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
    expected = np.asarray(resized)[top:top + size, left:left + size]
    out = np.asarray(streaming.resize_shorter_then_center_crop(Image.fromarray(image), size))
    np.testing.assert_array_equal(out, expected)


def test_evaluation_resize_smaller_than_the_crop_is_refused():
  with pytest.raises(InputError, match=r'evaluation resize \(50\) must be at least'):
    streaming.resize_shorter_then_center_crop(Image.new('RGB', (60, 60)), 56, 50)


# ------------------------------------------------------------------- batches

def test_train_batches_have_the_configured_shapes_and_labels(folder):
  source = streaming.ImageFolderSource(str(folder), 'train')
  assert len(source) == 10 * TRAIN_PER_CLASS and source.num_classes == 10
  for size in (64, 56):
    images, labels = train_batches(source, image_size=size, num_steps=1)[0]
    assert images.shape == (32, size, size, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    indices = input_pipeline.train_batch_indices(0, 0, len(source) // 32, 32, len(source))
    np.testing.assert_array_equal(labels, source.labels[indices])


def test_a_restart_at_step_k_sees_the_same_batches(folder):
  source = streaming.ImageFolderSource(str(folder), 'train')
  # 6 steps an epoch: steps 4..7 cross into the second epoch.
  full = train_batches(source, num_steps=8)
  resumed = train_batches(source, start_step=4, num_steps=4, num_workers=0)
  for (a_images, a_labels), (b_images, b_labels) in zip(full[4:], resumed, strict=True):
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
  assert not np.array_equal(full[0][0], full[1][0])


def test_process_shares_make_up_the_global_batch(folder):
  source = streaming.ImageFolderSource(str(folder), 'train')
  whole = train_batches(source, num_steps=2)
  shares = [train_batches(source, num_steps=2, process_index=p, process_count=2)
            for p in range(2)]
  for step, (images, labels) in enumerate(whole):
    np.testing.assert_array_equal(images, np.concatenate([s[step][0] for s in shares]))
    np.testing.assert_array_equal(labels, np.concatenate([s[step][1] for s in shares]))
  with pytest.raises(InputError, match='cannot be split evenly over 3 processes'):
    train_batches(source, process_count=3)
  with pytest.raises(InputError, match='at most the 200 training examples'):
    train_batches(source, steps_per_epoch=7)


def test_evaluation_counts_every_example_once(folder):
  source = streaming.ImageFolderSource(str(folder), 'val')
  shares = [list(streaming.eval_batches(source, global_batch_size=32, image_size=56,
                                        process_index=p, process_count=2, num_workers=2))
            for p in range(2)]
  assert [len(s) for s in shares] == [4, 4]  # 100 examples: 3 full global batches + 4
  # Global order: batch 0 of process 0, batch 0 of process 1, batch 1 of ...
  ordered = [batch for pair in zip(*shares, strict=True) for batch in pair]
  images, labels, mask = (np.concatenate(field) for field in zip(*ordered, strict=True))
  assert images.shape == (128, 56, 56, 3) and mask.sum() == len(source) and not mask[100:].any()
  np.testing.assert_array_equal(labels[mask], source.labels)
  assert not images[~mask].any()
  first = sorted(folder.glob('val/*/*'))[0]
  expected = streaming.resize_shorter_then_center_crop(Image.open(first).convert('RGB'), 56)
  np.testing.assert_array_equal(images[0], np.asarray(expected))


# ---------------------------------------------------------------- bad inputs

def test_eval_split_is_val_else_test(scratch):
  assert streaming.image_folder_sources(str(scratch))[1].split == 'val'
  shutil.copytree(scratch / 'val', scratch / 'test')
  assert streaming.image_folder_sources(str(scratch))[1].split == 'val'
  shutil.rmtree(scratch / 'val')
  train, test = streaming.image_folder_sources(str(scratch))
  assert test.split == 'test' and len(test) == 10 * VAL_PER_CLASS


def test_missing_folder_and_split_are_named(scratch):
  with pytest.raises(InputError, match=r"needs data_dir=.*got '.*/nowhere', which is not a folder"):
    streaming.image_folder_sources(str(scratch / 'nowhere'))
  shutil.rmtree(scratch / 'val')
  with pytest.raises(InputError, match=r'data has no val/ folder'):
    streaming.image_folder_sources(str(scratch))


def test_empty_class_folder_is_named(scratch):
  name = class_names(scratch)[3]
  for image in (scratch / 'val' / name).iterdir():
    image.unlink()
  with pytest.raises(InputError, match=rf'data/val/{name} holds no images'):
    streaming.image_folder_sources(str(scratch))


def test_classes_that_differ_between_splits_are_named(scratch):
  name = class_names(scratch)[8]
  (scratch / 'val' / name).rename(scratch / 'val' / 'boat')
  with pytest.raises(InputError, match=rf"only in train: \['{name}'\], only in val: \['boat'\]"):
    streaming.image_folder_sources(str(scratch))


def test_unreadable_files_are_named(scratch):
  source = streaming.ImageFolderSource(str(scratch), 'train')
  corrupt, vanished = Path(source.name(3)), Path(source.name(5))
  corrupt.write_bytes(b'not an image at all')
  vanished.unlink()
  with pytest.raises(InputError, match=rf'{corrupt} is not a readable image'):
    streaming.decode_image(source[3][0], source.name(3))
  with pytest.raises(InputError, match=rf'cannot read {vanished} \(No such file'):
    source[5]
  # Raised in a worker thread, it reaches the consumer unchanged; one epoch
  # of 5 steps of 40 reads every file.
  with pytest.raises(InputError, match='is not a readable image|cannot read'):
    train_batches(source, global_batch_size=40, steps_per_epoch=5, num_steps=5)


# ---------------------------------------------------------------------- tfds

def test_tfds_imagenet_source_under_mock_data():
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=40):
    source = streaming.tfds_source('imagenet2012', '/nonexistent', 'train')
    assert len(source) == 40 and source.num_classes == 1000
    data, label = source[7]
    assert isinstance(data, bytes) and data[:2] == b'\xff\xd8'  # an encoded JPEG
    assert 0 <= label < 1000
    images, labels = train_batches(source, num_steps=1)[0]
  assert images.shape == (32, 56, 56, 3) and labels.dtype == np.int32


def test_tfds_data_not_prepared_as_array_record_is_explained(tmp_path):
  command = r'`tfds build mnist --data_dir=.* --file_format=array_record`'
  with pytest.raises(InputError, match=rf'mnist in .* is not prepared in the array_record .*{command}'):
    streaming.tfds_source('mnist', str(tmp_path), 'train')


def test_tfds_source_reads_real_array_record_files(folder, tmp_path):
  import tensorflow_datasets as tfds

  paths = sorted(folder.glob('train/*/*.jpg'))[:12]

  # Not registered: the source finds it from its files, as it would find an
  # ImageNet prepared on another machine.
  with tfds.core.registered.skip_registration():
    class TinyFolder(tfds.core.GeneratorBasedBuilder):
      VERSION = tfds.core.Version('1.0.0')

      def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=10)}))

      def _split_generators(self, dl_manager):
        return {'train': self._generate_examples()}

      def _generate_examples(self):
        for i, path in enumerate(paths):
          yield i, {'image': path, 'label': i % 10}

  TinyFolder(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  source = streaming.tfds_source('tiny_folder', str(tmp_path), 'train')
  assert len(source) == 12 and source.num_classes == 10
  # tfds shuffles the records: match them to the files by their pixels.
  labels = {pil_rgb(path).tobytes(): i % 10 for i, path in enumerate(paths)}
  seen = {}
  for index in range(12):
    data, label = source[index]
    assert isinstance(data, bytes)
    seen[streaming.decode_image(data, source.name(index)).tobytes()] = label
  assert seen == labels
