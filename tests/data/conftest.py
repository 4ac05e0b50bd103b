"""The image folder the data tests read: 10 classes of CIFAR-10 photos (random
images without ../shared) of varied sizes and modes."""

from pathlib import Path

import pytest

from tests.support.images import make_image_folder

TRAIN_PER_CLASS, VAL_PER_CLASS = 20, 10


@pytest.fixture(scope='session')
def folder(tmp_path_factory) -> Path:
  """Read-only: a test that breaks it works on a copy."""
  return make_image_folder(
    tmp_path_factory.mktemp('images') / 'data', TRAIN_PER_CLASS, VAL_PER_CLASS
  )
