"""The ONNX export: onnxruntime gives the deploy model's logits, at any batch
size, for every family (the full tier; one kind each) and every kind (rc8).

Fused models are plain convs, so kinds differ only in their weights: every
kind once on the smallest model, one kind per family elsewhere."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from acnet_jax import models
from acnet_jax.deploy import artifacts, onnx_format, run_images
from acnet_jax.fusion import fuse_params
from acnet_jax.training import workdir as runs
from tests.deploy.test_artifacts import deploy_model_logits, deploy_variables
from tests.support.numerics import MODEL_RTOL, max_relative_error
from tests.support.runs import tiny_config

pytestmark = pytest.mark.needs_onnx
# onnxruntime sums each conv in its own order (its own kernels, not XLA's),
# over every layer: as a fused model against its trained form, MODEL_RTOL
# (tests/support/numerics.py). A lost bias or a transposed kernel is off by order 1.
ONNX_RTOL = MODEL_RTOL
BATCH_SIZES = (1, 7)

# (model, kind, input size): one kind per family, every kind on rc8.
FAMILIES = [
  ('cfqkbnc', 'dbb', 32),
  ('vc', 'acnet', 32),
  ('rc20', 'repvgg', 32),
  ('wrnc16', 'acnet', 32),
  ('densenet40', 'normal', 32),
  ('resnet18', 'dbb', 64),
  ('mobilenet_v1', 'repvgg', 64),
  ('alexnet', 'acnet', 224),
  *(('rc8', kind, 32) for kind in ('normal', 'acnet', 'dbb', 'repvgg')),
]


def onnx_logits(path, x: np.ndarray) -> np.ndarray:
  import onnxruntime as ort

  session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
  return session.run(None, {onnx_format.INPUT_NAME: x})[0]


@pytest.mark.full  # The onnx extra, which the full tier installs.
def test_the_onnx_model_gives_the_deploy_models_logits(tiny_run, tmp_path):
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  variables = deploy_variables(tiny_run)
  record = runs.read_run(str(tiny_run))
  card = artifacts.write_export(
    str(tmp_path / 'export'),
    record.config,
    variables['params'],
    variables['batch_stats'],
    record.input_shape,
    4,
    None,
    ('onnx',),
    record.class_names,
  )
  assert card['files'] == {'onnx': 'model.onnx'} and card['onnx_opset'] == onnx_format.OPSET
  import onnx

  model = onnx.load(str(tmp_path / 'export' / 'model.onnx'))
  assert model.opset_import[0].version == onnx_format.OPSET
  batch = model.graph.input[0].type.tensor_type.shape.dim[0]
  assert batch.dim_param and not batch.dim_value  # Symbolic: any batch size.
  test_images = next(run_images.test_batches(record.config))[0]  # The run's own.
  for n in BATCH_SIZES:
    expected = deploy_model_logits(variables, test_images[:n])
    logits = onnx_logits(tmp_path / 'export' / 'model.onnx', test_images[:n])
    assert logits.shape == expected.shape == (n, 10)
    assert max_relative_error(logits, expected) <= ONNX_RTOL
  assert float(np.std(expected)) > 1e-3  # The logits vary: the check shows something.


def random_deploy_variables(name: str, kind: str, size: int) -> dict:
  """A model of `kind` with random weights and BN statistics, fused."""
  from tests.support.numerics import randomize_batch_norm

  model = models.create_model(name, kind, num_classes=10)
  x = np.zeros((1, size, size, 3), np.float32)
  variables = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.key(0, impl='rbg'))
  variables = randomize_batch_norm(variables, 3, spread=0.3)
  params, batch_stats = jax.jit(fuse_params)(variables['params'], variables['batch_stats'])
  return {'params': params, 'batch_stats': batch_stats}


@pytest.mark.full
@pytest.mark.parametrize('name,kind,size', FAMILIES)
def test_every_family_and_kind_exports_to_onnx_with_its_logits(name, kind, size, tmp_path):
  pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  variables = random_deploy_variables(name, kind, size)
  logits = artifacts.deploy_logits(
    tiny_config(model=name), variables['params'], variables['batch_stats']
  )
  path = tmp_path / 'model.onnx'
  onnx_format.save_onnx(logits, (size, size, 3), str(path))
  x = np.random.default_rng(1).normal(size=(3, size, size, 3)).astype(np.float32)
  expected = np.asarray(logits(x))
  for n in (1, 3):
    assert max_relative_error(onnx_logits(path, x[:n]), expected[:n]) <= ONNX_RTOL
  assert float(np.std(expected)) > 1e-3
