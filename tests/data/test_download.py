"""A tfds download that cannot succeed fails within seconds, in one paragraph,
and leaves the tfds data folder as it was."""

from __future__ import annotations

import time

import pytest
import tensorflow_datasets as tfds

from acnet_jax.data import download, memory
from acnet_jax.errors import InputError
from tests.support.runs import tiny_config


def test_an_unreachable_host_fails_at_once_and_writes_nothing(tmp_path, monkeypatch):
  """The probe finds no route (as here, without internet): tfds is never asked."""
  monkeypatch.setattr(download, 'reachable', lambda host, timeout=5.0: 'gaierror: no such host')
  monkeypatch.setattr(
    tfds.core.DatasetBuilder,
    'download_and_prepare',
    lambda *a, **k: pytest.fail('tfds was asked to download'),
  )
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  start = time.perf_counter()
  with pytest.raises(
    InputError,
    match=r"tfds could not download or prepare 'cifar10' .*"
    r'gaierror: no such host.*Without internet',
  ):
    memory.dataset_info(tiny_config(dataset='cifar10', data_dir=str(data_dir)))
  assert time.perf_counter() - start < 15
  assert not list(data_dir.iterdir())


def test_a_download_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
  data_dir = tmp_path / 'tfds'
  (data_dir / 'mnist').mkdir(parents=True)
  (data_dir / 'mnist' / 'keep.txt').write_text('a data set of the user')

  def partial_download(self, *args, **kwargs):
    (data_dir / 'downloads' / 'extracted').mkdir(parents=True)
    (data_dir / 'downloads' / 'cifar-10.tar.gz.tmp').write_bytes(b'half')
    (data_dir / 'cifar10' / '3.0.2.incomplete').mkdir(parents=True)
    raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

  monkeypatch.setattr(download, 'reachable', lambda host, timeout=5.0: None)
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', partial_download)
  with pytest.raises(InputError, match=r'ConnectionError: Failed to resolve.*Without internet'):
    memory.dataset_info(tiny_config(dataset='cifar10', data_dir=str(data_dir)))
  assert sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob('*')) == [
    'mnist',
    'mnist/keep.txt',
  ]


def test_the_probe_says_why_a_host_cannot_be_reached():
  assert 'gaierror' in download.reachable('no-such-host.invalid', timeout=2)
