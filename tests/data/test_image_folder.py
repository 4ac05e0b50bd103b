"""Image folders: the evaluation split, and every bad folder or file named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from acnet_jax.data import stream, transforms
from acnet_jax.data.image_folder import ImageFolderSource, image_folder_sources
from acnet_jax.errors import InputError
from tests.data.conftest import VAL_PER_CLASS


@pytest.fixture
def scratch(folder, tmp_path) -> Path:
  """A copy of the folder that a test may break."""
  return Path(shutil.copytree(folder, tmp_path / 'data'))


def class_names(root: Path) -> list[str]:
  return sorted(p.name for p in (root / 'train').iterdir())


def test_eval_split_is_val_else_test(scratch):
  assert image_folder_sources(str(scratch))[1].split == 'val'
  shutil.copytree(scratch / 'val', scratch / 'test')
  assert image_folder_sources(str(scratch))[1].split == 'val'
  shutil.rmtree(scratch / 'val')
  train, test = image_folder_sources(str(scratch))
  assert test.split == 'test' and len(test) == 10 * VAL_PER_CLASS


def test_missing_folder_and_split_are_named(scratch):
  with pytest.raises(InputError, match=r"needs data_dir=.*got '.*/nowhere', which is not a folder"):
    image_folder_sources(str(scratch / 'nowhere'))
  shutil.rmtree(scratch / 'val')
  with pytest.raises(InputError, match=r'data has no val/ folder'):
    image_folder_sources(str(scratch))


def test_empty_class_folder_is_named(scratch):
  name = class_names(scratch)[3]
  for image in (scratch / 'val' / name).iterdir():
    image.unlink()
  with pytest.raises(InputError, match=rf'data/val/{name} holds no images'):
    image_folder_sources(str(scratch))


def test_classes_that_differ_between_splits_are_named(scratch):
  name = class_names(scratch)[8]
  (scratch / 'val' / name).rename(scratch / 'val' / 'boat')
  with pytest.raises(InputError, match=rf"only in train: \['{name}'\], only in val: \['boat'\]"):
    image_folder_sources(str(scratch))


def test_unreadable_files_are_named(scratch):
  source = ImageFolderSource(str(scratch), 'train')
  corrupt, vanished = Path(source.name(3)), Path(source.name(5))
  corrupt.write_bytes(b'not an image at all')
  vanished.unlink()
  with pytest.raises(InputError, match=rf'{corrupt} is not a readable image'):
    transforms.decode_image(source[3][0], source.name(3))
  with pytest.raises(InputError, match=rf'cannot read {vanished} \(No such file'):
    source[5]
  # Raised in a worker thread, it reaches the consumer unchanged; one epoch
  # of 5 steps of 40 reads every file.
  with pytest.raises(InputError, match='is not a readable image|cannot read'):
    list(
      stream.train_batches(
        source,
        seed=0,
        global_batch_size=40,
        steps_per_epoch=5,
        image_size=56,
        start_step=0,
        num_steps=5,
        process_index=0,
        process_count=1,
        num_workers=2,
      )
    )
