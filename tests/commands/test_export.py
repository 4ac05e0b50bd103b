"""python -m acnet_jax.export: a run's checkpoint of any step, fused and
exported at the input shape the run recorded; bad input is one paragraph and
writes nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from acnet_jax import export
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.training.trainer import create_model
from tests.conftest import TINY_RUN
from tests.support.numerics import max_relative_error
from tests.support.runs import run_command, tiny_config

EXPORT_RTOL = 1e-5


def copy_run(run: Path, target: Path) -> Path:
  shutil.copytree(run, target, ignore=shutil.ignore_patterns('export', 'tensorboard'))
  return target


@pytest.mark.full  # A run of its own, trained on.
def test_an_earlier_step_is_exported_from_its_own_checkpoint(tiny_run, tmp_path):
  workdir = copy_run(tiny_run, tmp_path / 'run')
  card = export.export_run(str(workdir), step=2, formats='stablehlo')
  assert sorted(os.listdir(workdir / 'export')) == ['model.jax_exported', 'model.json']
  assert card['step'] == 2 and card['test_top1'] is None  # eval.json is of step 4.
  assert card['input_shape'] == [None, 32, 32, 3]

  # The variables of step 2, read as saved and fused here, without the export code.
  manager = ocp.CheckpointManager(workdir / 'checkpoints')
  state = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  params, batch_stats = jax.jit(fuse_params)(state['params'], state['batch_stats'])
  exported = jax.export.deserialize(
    bytearray((workdir / 'export' / 'model.jax_exported').read_bytes())
  )
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  model = create_model(tiny_config(**TINY_RUN), 'deploy')
  expected = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)
  assert max_relative_error(np.asarray(exported.call(x)), expected) <= EXPORT_RTOL


def test_the_input_size_is_the_recorded_one_unless_given(tiny_run, tmp_path):
  workdir = copy_run(tiny_run, tmp_path / 'run')
  assert export.export_run(str(workdir), formats='stablehlo', image_size=24)['input_shape'] == [
    None,
    24,
    24,
    3,
  ]
  config = json.loads((workdir / 'config.json').read_text())
  del config['recorded']  # A run from before the shape was recorded.
  (workdir / 'config.json').write_text(json.dumps(config))
  with pytest.raises(InputError, match='does not record the input shape.*pass --image_size'):
    export.export_run(str(workdir), formats='stablehlo')
  assert export.export_run(str(workdir), formats='stablehlo', image_size=32)['class_names'] is None


def another_models_run(run: Path, tmp_path: Path) -> Path:
  workdir = copy_run(run, tmp_path / 'run')
  config = json.loads((workdir / 'config.json').read_text())
  (workdir / 'config.json').write_text(json.dumps({**config, 'model': 'rc20'}))
  return workdir


def config_only(run: Path, tmp_path: Path) -> Path:
  shutil.copy(run / 'config.json', tmp_path / 'config.json')
  return tmp_path


def empty(run: Path, tmp_path: Path) -> Path:
  return tmp_path


def unreadable_config(run: Path, tmp_path: Path) -> Path:
  (tmp_path / 'config.json').write_text('{"model": ')
  return tmp_path


def copied(run: Path, tmp_path: Path) -> Path:
  return copy_run(run, tmp_path / 'run')


@pytest.mark.parametrize(
  'workdir_of,options,message',
  [
    (empty, {}, 'is not the --workdir of a training run: it has no config.json'),
    (unreadable_config, {}, 'config.json is not the JSON a training run writes'),
    (config_only, {}, 'no checkpoint in .*checkpoints: train first'),
    (another_models_run, {}, "is of model='rc8' but this config has model='rc20'"),
    (copied, {'step': 3}, 'no checkpoint of step 3 in .*; it has steps 2, 4'),
    (
      copied,
      {'formats': 'stablehlo,tflite'},
      "unknown export format 'tflite'; valid: stablehlo, savedmodel",
    ),
    (copied, {'formats': ''}, 'no export format given'),
    (
      copied,
      {'formats': 'torchvision'},
      'the torchvision format is for resnet18, resnet34, resnet50, not rc8',
    ),
  ],
)
def test_bad_input_is_refused_before_anything_is_written(
  workdir_of, options, message, tiny_run, tmp_path
):
  workdir = workdir_of(tiny_run, tmp_path)
  with pytest.raises(InputError, match=message):
    export.export_run(str(workdir), **options)
  assert not (workdir / 'export').exists() and not (workdir / 'export.partial').exists()


@pytest.mark.full
def test_the_cli_exports_and_says_bad_input_in_one_paragraph(tiny_run, tmp_path):
  workdir = copy_run(tiny_run, tmp_path / 'run')
  completed = run_command('export', f'--workdir={workdir}', '--step=2', '--format=stablehlo')
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert f'Exported the deploy model of step 2 to {workdir}/export' in completed.stdout
  completed = run_command('export', f'--workdir={tmp_path / "empty"}')
  assert completed.returncode == 1
  assert 'has no config.json' in completed.stderr and 'Traceback' not in completed.stderr
