"""The exported model's throughput (acnet_jax/benchmarking/exported.py): the
tiny run exported as stablehlo and onnx-int8, timed under every runtime at two
batch sizes; a folder without the files is refused; an ONNX float model that
does not compute XLA's logits is refused before anything is timed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from acnet_jax import export
from acnet_jax.benchmarking import exported
from acnet_jax.deploy import artifacts
from acnet_jax.errors import InputError

RUNTIMES = ['xla float32', 'onnxruntime float32', 'onnxruntime int8']


@pytest.mark.full  # The onnx extra, which the full tier installs.
@pytest.mark.needs_onnx
def test_every_runtime_is_timed_at_every_batch_size(tiny_run, tmp_path):
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns('export'))
  export.export_run(str(workdir), formats='stablehlo,onnx-int8', calibration_images=16)
  rows = exported.time_exported(str(workdir / 'export'), [1, 3], rounds=2, warmup=1)
  assert [(row['batch_size'], row['runtime']) for row in rows] == [
    (size, runtime) for size in (1, 3) for runtime in RUNTIMES
  ]
  for row in rows:
    assert row['n'] == 2 and 0 < row['min_s'] <= row['median_s'] <= row['max_s']
    assert row['images_per_s'] == pytest.approx(row['batch_size'] / row['median_s'])
  assert exported.format_rows(rows).count('\n') == 1 + len(rows)


def test_a_folder_without_the_exported_files_is_refused(tmp_path):
  (tmp_path / artifacts.CARD_FILE).write_text('{}')
  with pytest.raises(InputError, match='--format=stablehlo,onnx-int8'):
    exported.runtimes(str(tmp_path))
  with pytest.raises(InputError, match='not an export folder'):
    exported.read_card(str(tmp_path / 'elsewhere'))


def test_onnx_logits_that_are_not_xlas_are_refused():
  images = np.ones((2, 4), np.float32)
  same = {'xla float32': lambda x: 2 * x, 'onnxruntime float32': lambda x: 2 * x + 1e-6}
  exported.check_float_runtimes_agree(same, images)
  other = {'xla float32': lambda x: 2 * x, 'onnxruntime float32': lambda x: 2 * x + 1e-2}
  with pytest.raises(AssertionError, match='not the same model'):
    exported.check_float_runtimes_agree(other, images)
