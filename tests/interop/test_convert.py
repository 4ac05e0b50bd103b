"""The authors' models, weight for weight: random weights in the PyTorch mirror
of their code (authors_torch), saved as their code saves them,
converted by `python -m acnet_jax.convert`'s function into a workdir, restored
as `--mode=eval` restores it: the same eval-mode logits, for every model,
repository and conv kind the authors have."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from acnet_jax import create_model
from acnet_jax.interop import convert
from acnet_jax.training import workdir as runs
from tests.support.numerics import MODEL_RTOL, max_relative_error
from tests.support.torch_extra import require_torch

pytestmark = [pytest.mark.full, pytest.mark.needs_torch]

CIFAR_MODELS = ('cfqkbnc', 'rc56', 'vc', 'wrnc16')
IMAGENET_MODELS = ('resnet18', 'resnet34', 'resnet50', 'mobilenet_v1')
DBB_MODELS = ('resnet18', 'resnet50', 'mobilenet_v1')
# Each of ACNet's two files for each model: the CIFAR ones' baseline as .hdf5,
# the ImageNet ones' as .pth, and the ACNets the other way.
CASES = [
  *[
    ('acnet', model, kind, save)
    for model in CIFAR_MODELS
    for kind, save in (('normal', 'hdf5'), ('acnet', 'pth'), ('acnet_deploy', 'hdf5'))
  ],
  *[
    ('acnet', model, kind, save)
    for model in IMAGENET_MODELS
    for kind, save in (('normal', 'pth'), ('acnet', 'hdf5'), ('acnet_deploy', 'hdf5'))
  ],
  *[
    ('dbb', model, kind, 'pth')
    for model in DBB_MODELS
    for kind in ('normal', 'normal_deploy', 'acnet', 'acnet_deploy', 'dbb', 'dbb_deploy')
  ],
]


@pytest.fixture(autouse=True)
def torch_extra():
  require_torch()


def authors_images(model: str):
  """A few NCHW images at the model's size (2 at 224 px: the logits of any
  batch are per image)."""
  import torch

  height, width, channels = convert.input_shape(model)
  count = 2 if height > 32 else 4
  return torch.randn(count, channels, height, width, generator=torch.Generator().manual_seed(1))


@functools.cache
def eval_logits(model: str, conv: str, num_classes: int):
  """Our model's eval-mode logits, jitted once per model and kind."""
  module = create_model(model, conv, num_classes)
  return jax.jit(lambda variables, x: module.apply(variables, x, train=False))


def restored_logits(workdir, x_nchw) -> np.ndarray:
  """What --mode=eval computes: the run's config.json, its newest checkpoint."""
  run = runs.read_run(str(workdir))
  state = runs.restore_step_or_newest(str(workdir), run.config, None, run.input_shape)
  logits = eval_logits(run.config.model, run.config.conv, run.config.num_classes)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return np.asarray(logits(variables, x_nchw.permute(0, 2, 3, 1).numpy()))


@pytest.mark.parametrize('layout,model,kind,save', CASES)
def test_a_converted_checkpoint_gives_the_authors_logits(layout, model, kind, save, tmp_path):
  import torch

  from authors_torch.checkpoints import saved_checkpoint

  classes = 1000 if model in IMAGENET_MODELS else 10
  x = authors_images(model)
  path, net = saved_checkpoint(layout, model, kind, classes, x, tmp_path, save)
  with torch.no_grad():
    expected = net(x).numpy()
  workdir = tmp_path / 'run'
  converted, config = convert.convert_file(str(path), model, str(workdir))
  assert converted.their_kind == kind
  assert (config.model, config.conv, config.num_classes) == (model, convert.OUR_KIND[kind], classes)
  record = runs.read_run(str(workdir))
  assert record.input_shape == convert.input_shape(model) and len(record.class_names) == classes
  # Two exact computations of one model, summed in other orders (numerics.py).
  assert max_relative_error(restored_logits(workdir, x), expected) <= MODEL_RTOL


def test_training_a_converted_run_starts_from_its_weights(tmp_path, caplog):
  """How docs/results.md trains from the PyTorch mirror's initial weights:
  convert them, then train that workdir with the preset (allowing the changed
  config). At learning rate 0 the trained weights are the converted ones, bit
  for bit; a fresh initialisation would differ everywhere."""
  import torch

  from acnet_jax.training import loop, presets
  from authors_torch import acnet_models, saving

  torch.manual_seed(0)
  net = acnet_models.build('cfqkbnc', 'acnet', 10, gamma_init=0.333)
  path = tmp_path / 'pytorch_init.hdf5'
  saving.save_hdf5(saving.numpy_state_dict(net), path)
  workdir = str(tmp_path / 'run')
  converted, _ = convert.convert_file(str(path), 'cfqkbnc', workdir)
  config = presets.preset('cfqkbnc', 'acnet_cosine')
  config.update(
    dataset='synthetic',
    synthetic_examples=32,
    batch_size=16,
    eval_batch_size=16,
    num_epochs=1,
    learning_rate=0.0,
  )
  with caplog.at_level('INFO'):
    loop.train_and_evaluate(config, workdir, allow_config_change=True)
  assert 'from the checkpoint of step 0' in caplog.text
  trained = runs.restore_step_or_newest(workdir, config, None, convert.input_shape('cfqkbnc'))
  assert int(trained.step) == 2
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(trained.params), converted.params)
