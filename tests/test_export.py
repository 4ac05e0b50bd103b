"""The exported deploy model: each artifact, loaded in a process that cannot
import acnet_jax, computes the deploy model's logits; bad input is one
paragraph; the fusion notebook runs top to bottom."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import nbclient
import nbformat
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image
from helpers import max_relative_error
from test_train import tiny_config

from acnet_jax import export, train
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params

ROOT = Path(__file__).parents[1]
# rc8 ACNet on 64 synthetic 32-pixel images: 4 steps, checkpoints at 2 and 4,
# exported at the end of training (the config switch).
RUN_CONFIG = dict(conv='acnet', num_epochs=1, checkpoint_every_steps=2,
                  export_formats='stablehlo,savedmodel')
FINAL_STEP = 4
# One function compiled twice (by JAX, or by TensorFlow's XLA for the
# SavedModel) may fuse and order float32 sums differently: about sqrt(n) u of
# the logits' scale (tests/helpers.py), far below this; a wrong variable or
# a lost layer is off by order 1.
EXPORT_RTOL = 1e-5
BATCH_SIZES = (1, 7)

# argv: the artifact, an .npy of images, the .npz to write logits to.
LOADER_SCRIPT = """
import sys
sys.modules['acnet_jax'] = None  # Any import of acnet_jax now fails.
import numpy as np
path, images, out = sys.argv[1:]
{load}
x = np.load(images)
np.savez(out, **{{str(n): run(x[:n]) for n in {batch_sizes}}})
"""
LOADERS = {
    'model.jax_exported': """
import jax
exported = jax.export.deserialize(bytearray(open(path, 'rb').read()))
run = lambda x: np.asarray(exported.call(x))
""",
    'saved_model': """
import tensorflow as tf
serve = tf.saved_model.load(path).signatures['serving_default']
run = lambda x: serve(images=tf.constant(x))['logits'].numpy()
""",
}


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> Path:
  workdir = tmp_path_factory.mktemp('run')
  train.train_and_evaluate(tiny_config(**RUN_CONFIG), str(workdir))
  return workdir


def images() -> np.ndarray:
  """Normalised images, as the exported function takes them."""
  return np.random.default_rng(0).normal(size=(max(BATCH_SIZES), 32, 32, 3)).astype(np.float32)


def deploy_model_logits(variables: dict, x: np.ndarray) -> np.ndarray:
  model = train.create_model(tiny_config(**RUN_CONFIG), 'deploy')
  return np.asarray(jax.jit(functools.partial(model.apply, train=False))(variables, x))


def load_elsewhere(artifact: Path, tmp_path: Path) -> dict[str, np.ndarray]:
  """Logits per batch size, from a fresh process outside the repository."""
  np.save(tmp_path / 'images.npy', images())
  script = LOADER_SCRIPT.format(load=LOADERS[artifact.name], batch_sizes=BATCH_SIZES)
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  completed = subprocess.run(
      [sys.executable, '-c', script, str(artifact), 'images.npy', 'logits.npz'], cwd=tmp_path,
      env=env, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  return dict(np.load(tmp_path / 'logits.npz'))


@pytest.mark.parametrize('artifact', sorted(LOADERS))
def test_an_artifact_gives_the_deploy_models_logits_without_acnet_jax(artifact, run, tmp_path):
  variables = ocp.StandardCheckpointer().restore(run / 'deploy' / str(FINAL_STEP))
  logits = load_elsewhere(run / 'export' / artifact, tmp_path)
  for n in BATCH_SIZES:
    expected = deploy_model_logits(variables, images()[:n])
    assert logits[str(n)].shape == expected.shape == (n, 10)
    assert max_relative_error(logits[str(n)], expected) <= EXPORT_RTOL


def test_model_json_says_what_the_function_takes_and_where_it_came_from(run):
  card = json.loads((run / 'export' / 'model.json').read_text())
  assert {key: card[key] for key in ('model', 'conv', 'exported_conv', 'num_classes',
                                     'input_shape', 'input_dtype', 'pixel_mean', 'pixel_std',
                                     'step', 'files')} == {
      'model': 'rc8', 'conv': 'acnet', 'exported_conv': 'deploy', 'num_classes': 10,
      'input_shape': [None, 32, 32, 3], 'input_dtype': 'float32', 'pixel_mean': [0.5] * 3,
      'pixel_std': [0.5] * 3, 'step': FINAL_STEP,
      'files': {'stablehlo': 'model.jax_exported', 'savedmodel': 'saved_model'}}
  assert 'normalised' in card['input']
  assert card['test_top1'] == json.loads((run / 'eval.json').read_text())['fused_top1']


def export_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'acnet_jax.export', *args], cwd=ROOT,
                        env={**os.environ, 'PYTHONPATH': str(ROOT)}, capture_output=True,
                        text=True, timeout=300)


def copy_run(run: Path, target: Path) -> Path:
  shutil.copytree(run, target, ignore=shutil.ignore_patterns('export', 'tensorboard'))
  return target


def test_the_cli_exports_an_earlier_step_in_one_format(run, tmp_path):
  workdir = copy_run(run, tmp_path / 'run')
  completed = export_cli(f'--workdir={workdir}', '--step=2', '--format=stablehlo')
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert f'Exported the deploy model of step 2 to {workdir}/export' in completed.stdout
  assert sorted(os.listdir(workdir / 'export')) == ['model.jax_exported', 'model.json']
  card = json.loads((workdir / 'export' / 'model.json').read_text())
  assert card['step'] == 2 and card['test_top1'] is None  # eval.json is of step 4.

  # The variables of step 2, read as saved and fused here, without the export code.
  manager = ocp.CheckpointManager(workdir / 'checkpoints')
  state = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  params, batch_stats = jax.jit(fuse_params)(state['params'], state['batch_stats'])
  exported = jax.export.deserialize(bytearray((workdir / 'export' / 'model.jax_exported')
                                              .read_bytes()))
  expected = deploy_model_logits({'params': params, 'batch_stats': batch_stats}, images())
  assert max_relative_error(np.asarray(exported.call(images())), expected) <= EXPORT_RTOL


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


@pytest.mark.parametrize('workdir_of,options,message', [
    (empty, {}, 'is not the --workdir of a training run: it has no config.json'),
    (unreadable_config, {}, 'config.json is not the JSON a training run writes'),
    (config_only, {}, 'no checkpoint in .*checkpoints: train first'),
    (another_models_run, {}, "is of model='rc8' but this config has model='rc20'"),
    (copied, {'step': 3}, 'no checkpoint of step 3 in .*; it has steps 2, 4'),
    (copied, {'formats': 'stablehlo,onnx'},
     "unknown export format 'onnx'; valid: stablehlo, savedmodel"),
])
def test_bad_input_is_refused_before_anything_is_written(workdir_of, options, message, run,
                                                         tmp_path):
  workdir = workdir_of(run, tmp_path)
  with pytest.raises(InputError, match=message):
    export.export_run(str(workdir), **options)
  assert not (workdir / 'export').exists() and not (workdir / 'export.partial').exists()


def test_the_cli_says_bad_input_in_one_paragraph(tmp_path):
  completed = export_cli(f'--workdir={tmp_path}')
  assert completed.returncode == 1
  assert 'has no config.json' in completed.stderr and 'Traceback' not in completed.stderr
  assert not list(tmp_path.iterdir())


def test_the_input_shape_is_the_one_the_run_trained_at(tmp_path):
  for split in ('train', 'val'):
    for label in ('a', 'b'):
      (tmp_path / split / label).mkdir(parents=True)
      Image.new('RGB', (24, 20)).save(tmp_path / split / label / '0.png')
  def shape(flag: int = 0, **overrides) -> tuple[int, int, int]:
    """With --image_size=flag, of a run of tiny_config(**overrides)."""
    config = tiny_config()
    config.update(overrides)
    return export.input_shape(config, flag)

  assert shape() == shape(dataset='cifar10', image_size=64) == (32, 32, 3)
  assert shape(dataset='imagenet2012', image_size=224) == (224, 224, 3)  # Streamed: the crop.
  folder = dict(dataset='image_folder', data_dir=str(tmp_path), image_size=64)
  assert shape(**folder) == (20, 24, 3)  # Held in memory, at the images' size.
  assert shape(**folder, pipeline='stream') == (64, 64, 3)
  gone = {**folder, 'data_dir': str(tmp_path / 'gone')}
  with pytest.raises(InputError, match='pass --image_size'):
    shape(**gone)
  assert shape(48, **gone) == (48, 48, 3)


def test_the_fusion_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  """Every cell, in a fresh kernel: the notebook trains its own tiny run (in
  the kernel's temporary folder, here tmp_path) and fails on any error."""
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  notebook = nbformat.read(ROOT / 'notebooks' / 'fusion.ipynb', as_version=4)
  nbclient.NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
