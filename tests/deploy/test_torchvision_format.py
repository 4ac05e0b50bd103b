"""The torchvision export: a fused ResNet loads into torchvision's resnet18/34/50
with strict=True and gives our deploy model's logits. The weights come from
the authors' code (their ResNet with random weights, converted), so one test
runs the whole path a user would: their checkpoint -> acnet_jax.convert ->
acnet_jax.export --format=torchvision -> torchvision."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from acnet_jax import create_model, fuse_params
from acnet_jax.deploy.artifacts import CARD_FILE, EXPORT_DIR
from acnet_jax.deploy.torchvision_format import TORCHVISION_FILE, torchvision_state_dict
from acnet_jax.errors import InputError
from acnet_jax.export import export_run
from acnet_jax.interop import convert
from acnet_jax.training import workdir as runs
from tests.support.numerics import MODEL_RTOL, max_relative_error
from tests.support.torch_extra import require_torch

CLASSES = 1000


@pytest.mark.full
@pytest.mark.needs_torch
@pytest.mark.parametrize(
  'layout,model,kind',
  [('dbb', 'resnet18', 'dbb'), ('acnet', 'resnet34', 'acnet'), ('dbb', 'resnet50', 'normal')],
)
def test_the_torchvision_export_gives_the_deploy_model_s_logits(layout, model, kind, tmp_path):
  require_torch()
  import safetensors.torch
  import torch
  import torchvision

  from authors_torch.checkpoints import saved_checkpoint

  x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
  path, authors_model = saved_checkpoint(layout, model, kind, CLASSES, x, tmp_path)
  workdir = tmp_path / 'run'
  convert.convert_file(str(path), model, str(workdir))
  card = export_run(str(workdir), formats='torchvision')
  assert card['files'] == {'torchvision': TORCHVISION_FILE}
  assert json.loads((workdir / EXPORT_DIR / CARD_FILE).read_text())['model'] == model

  resnet = getattr(torchvision.models, model)(num_classes=CLASSES).eval()
  resnet.load_state_dict(
    safetensors.torch.load_file(workdir / EXPORT_DIR / TORCHVISION_FILE), strict=True
  )
  with torch.no_grad():
    exported, authors = resnet(x).numpy(), authors_model(x).numpy()
  run = runs.read_run(str(workdir))
  state = runs.restore_step_or_newest(str(workdir), run.config, None, run.input_shape)
  params, batch_stats = jax.jit(fuse_params)(state.params, state.batch_stats)
  deploy = create_model(model, 'deploy', CLASSES)
  ours = jax.jit(lambda v, x: deploy.apply(v, x, train=False))(
    {'params': params, 'batch_stats': batch_stats}, x.permute(0, 2, 3, 1).numpy()
  )
  # Exact computations of one model in other orders (numerics.py).
  assert max_relative_error(exported, np.asarray(ours)) <= MODEL_RTOL
  assert max_relative_error(exported, authors) <= MODEL_RTOL


def test_the_fused_bias_goes_into_the_bn_after_each_conv():
  """Shapes only: the deploy model's variables as torchvision names them."""
  deploy = create_model('resnet50', 'deploy', 10)
  shapes = jax.eval_shape(
    lambda: deploy.init(jax.random.key(0), jax.numpy.zeros((1, 64, 64, 3)), train=False)
  )
  params = jax.tree.map(lambda leaf: np.full(leaf.shape, 0.5, np.float32), shapes['params'])
  state = torchvision_state_dict('resnet50', params)
  assert state['layer2.0.downsample.0.weight'].shape == (512, 256, 1, 1)
  assert state['layer4.2.conv2.weight'].shape == (512, 512, 3, 3)
  np.testing.assert_array_equal(state['layer1.0.bn3.bias'], np.full(256, 0.5))
  np.testing.assert_array_equal(state['bn1.running_var'], np.full(64, 1 - 1e-5, np.float32))
  assert state['fc.weight'].shape == (10, 2048) and state['bn1.num_batches_tracked'].shape == ()
  # torchvision's resnet50: 53 convs each with a BN of 5 entries, and fc's 2.
  assert len(state) == 53 * 6 + 2
  with pytest.raises(InputError, match='mobilenet_v1 has no torchvision counterpart'):
    torchvision_state_dict('mobilenet_v1', params)
