"""The exported deploy model: each artifact computes the deploy model's logits
(in this process, and in a fresh one that cannot import acnet_jax), and
model.json says what the function takes and where it came from."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from acnet_jax.deploy import artifacts
from acnet_jax.errors import InputError
from acnet_jax.training import workdir as runs
from acnet_jax.training.trainer import create_model
from tests.conftest import TINY_RUN, TINY_RUN_STEPS
from tests.support.numerics import max_relative_error
from tests.support.runs import tiny_config

# One function compiled twice (by JAX, or by TensorFlow's XLA for the
# SavedModel) may fuse and order float32 sums differently: about sqrt(n) u of
# the logits' scale (tests/support/numerics.py), far below this; a wrong
# variable or a lost layer is off by order 1.
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


def images() -> np.ndarray:
  """Normalised images, as the exported function takes them."""
  return np.random.default_rng(0).normal(size=(max(BATCH_SIZES), 32, 32, 3)).astype(np.float32)


def deploy_variables(run: Path) -> dict:
  return ocp.StandardCheckpointer().restore(run / 'deploy' / str(TINY_RUN_STEPS))


def deploy_model_logits(variables: dict, x: np.ndarray) -> np.ndarray:
  model = create_model(tiny_config(**TINY_RUN), 'deploy')
  return np.asarray(jax.jit(functools.partial(model.apply, train=False))(variables, x))


@pytest.fixture(scope='module')
def both_formats(tiny_run, tmp_path_factory) -> Path:
  """The tiny run's deploy model in both formats (the SavedModel imports
  TensorFlow: the full tier only)."""
  directory = tmp_path_factory.mktemp('export') / 'export'
  variables = deploy_variables(tiny_run)
  record = runs.read_run(str(tiny_run))
  artifacts.write_export(
    str(directory),
    record.config,
    variables['params'],
    variables['batch_stats'],
    record.input_shape,
    TINY_RUN_STEPS,
    None,
    artifacts.DEFAULT_FORMATS,
    record.class_names,
  )
  return directory


def test_the_jax_export_file_gives_the_deploy_models_logits(tiny_run):
  exported = jax.export.deserialize(
    bytearray((tiny_run / 'export' / artifacts.STABLEHLO_FILE).read_bytes())
  )
  variables = deploy_variables(tiny_run)
  for n in BATCH_SIZES:
    expected = deploy_model_logits(variables, images()[:n])
    logits = np.asarray(exported.call(images()[:n]))
    assert logits.shape == expected.shape == (n, 10)
    assert max_relative_error(logits, expected) <= EXPORT_RTOL


def test_model_json_says_what_the_function_takes_and_where_it_came_from(tiny_run):
  card = json.loads((tiny_run / 'export' / artifacts.CARD_FILE).read_text())
  assert {
    key: card[key]
    for key in (
      'model',
      'conv',
      'exported_conv',
      'num_classes',
      'class_names',
      'input_shape',
      'input_dtype',
      'pixel_mean',
      'pixel_std',
      'step',
      'files',
    )
  } == {
    'model': 'rc8',
    'conv': 'acnet',
    'exported_conv': 'deploy',
    'num_classes': 10,
    'class_names': [str(i) for i in range(10)],
    'input_shape': [None, 32, 32, 3],
    'input_dtype': 'float32',
    'pixel_mean': [0.5] * 3,
    'pixel_std': [0.5] * 3,
    'step': TINY_RUN_STEPS,
    'files': {'stablehlo': 'model.jax_exported'},
  }
  assert 'normalised' in card['input']
  assert card['test_top1'] == json.loads((tiny_run / 'eval.json').read_text())['fused_top1']


def test_an_export_replaces_the_previous_one_whole(tiny_run, tmp_path):
  directory = tmp_path / 'export'
  variables = deploy_variables(tiny_run)
  record = runs.read_run(str(tiny_run))
  write = functools.partial(
    artifacts.write_export,
    str(directory),
    record.config,
    variables['params'],
    variables['batch_stats'],
    record.input_shape,
    TINY_RUN_STEPS,
    None,
    class_names=None,
  )
  write(formats=('stablehlo',))
  (directory / 'stale.txt').write_text('from before')
  card = write(formats=('stablehlo',))
  assert sorted(os.listdir(directory)) == ['model.jax_exported', 'model.json']
  assert card['class_names'] is None and not (tmp_path / 'export.partial').exists()


def load_elsewhere(artifact: Path, tmp_path: Path) -> dict[str, np.ndarray]:
  """Logits per batch size, from a fresh process outside the repository."""
  np.save(tmp_path / 'images.npy', images())
  script = LOADER_SCRIPT.format(load=LOADERS[artifact.name], batch_sizes=BATCH_SIZES)
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  completed = subprocess.run(
    [sys.executable, '-c', script, str(artifact), 'images.npy', 'logits.npz'],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  return dict(np.load(tmp_path / 'logits.npz'))


@pytest.mark.full
@pytest.mark.parametrize('artifact', sorted(LOADERS))
def test_an_artifact_gives_the_deploy_models_logits_without_acnet_jax(
  artifact, both_formats, tiny_run, tmp_path
):
  logits = load_elsewhere(both_formats / artifact, tmp_path)
  for n in BATCH_SIZES:
    expected = deploy_model_logits(deploy_variables(tiny_run), images()[:n])
    assert logits[str(n)].shape == expected.shape == (n, 10)
    assert max_relative_error(logits[str(n)], expected) <= EXPORT_RTOL


def test_onnx_formats_without_the_extra_say_how_to_install_it(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util,
    'find_spec',
    lambda name, *args: None if name == 'jax2onnx' else find_spec(name, *args),
  )
  assert artifacts.parse_formats('stablehlo') == ('stablehlo',)
  with pytest.raises(InputError, match=r"need the onnx extra .*pip install -e '\.\[onnx\]'"):
    artifacts.parse_formats('stablehlo,onnx-int8')


@pytest.mark.full  # The onnx extra, which the full tier installs.
@pytest.mark.needs_onnx
def test_onnx_int8_brings_the_onnx_model_it_quantizes():
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  assert artifacts.parse_formats('stablehlo,onnx-int8') == ('stablehlo', 'onnx', 'onnx-int8')
  assert artifacts.parse_formats('onnx,onnx-int8') == ('onnx', 'onnx-int8')
