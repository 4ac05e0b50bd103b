"""The converter without torch: an .hdf5 with the keys and shapes of the
authors' Cifar-quick becomes a run that restores to the same values, and
every flaw of a checkpoint is one paragraph naming the key, with nothing
written. The command line end to end (convert, then --mode=eval on images)
is in the full tier."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from acnet_jax.errors import InputError
from acnet_jax.interop import convert
from acnet_jax.interop.layouts import layouts_of
from acnet_jax.training import workdir as runs
from tests.support.images import make_image_folder
from tests.support.runs import flat, run_command


def authors_weights(model: str, their_kind: str, classes: int = 10) -> dict[str, np.ndarray]:
  """Random arrays under every key, of every shape, that the authors' model has."""
  layout = layouts_of(model)[0]
  plan = convert.make_plan(
    layout, their_kind, convert.abstract_variables(model, convert.OUR_KIND[their_kind], classes)
  )
  rng = np.random.default_rng(0)
  weights = {
    key: rng.uniform(0.5, 1.5, entry.shape).astype(np.float32) for key, entry in plan.keyed.items()
  }
  return {**weights, **{key: np.array(3, np.int64) for key in plan.ignored}}


def save_hdf5(weights: dict[str, np.ndarray], path: Path) -> str:
  """As the authors' utils/misc.py save_hdf5."""
  with h5py.File(path, 'w') as f:
    for key, value in weights.items():
      f.create_dataset(key.replace('/', '+'), data=value)
  return str(path)


def test_an_hdf5_checkpoint_becomes_a_run_that_restores_its_values(tmp_path):
  weights = authors_weights('cfqkbnc', 'acnet')
  workdir = tmp_path / 'run'
  converted, config = convert.convert_file(
    save_hdf5(weights, tmp_path / 'finish.hdf5'), 'cfqkbnc', str(workdir)
  )
  assert (config.model, config.conv, config.try_arg) == ('cfqkbnc', 'acnet', 'acnet_cosine')
  record = runs.read_run(str(workdir))
  assert record.input_shape == (32, 32, 3) and record.class_names == convert.CIFAR10_CLASSES
  state = runs.restore_step_or_newest(str(workdir), record.config, None, record.input_shape)
  assert int(state.step) == 0
  restored = flat({'params': state.params, 'batch_stats': state.batch_stats})
  assert (
    restored.keys()
    == flat({'params': converted.params, 'batch_stats': converted.batch_stats}).keys()
  )
  # Weight for weight: the square kernel is the transposed torch kernel, the
  # running variance the torch one, and fc1 reads conv3's map in NHWC order.
  square = state.params['conv1']['square']['kernel']
  np.testing.assert_array_equal(
    square, weights['conv1.acb.square_conv.weight'].transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
    state.batch_stats['conv2']['ver_bn']['var'], weights['conv2.acb.ver_bn.running_var']
  )
  fc1 = weights['fc1.weight'].reshape(64, 64, 3, 3)  # [out, C, H, W]
  np.testing.assert_array_equal(
    state.params['fc1']['kernel'][(1 * 3 + 2) * 64 + 5], fc1[:, 5, 1, 2]
  )


def test_a_deploy_checkpoint_becomes_the_normal_model_with_the_fused_biases():
  weights = authors_weights('rc56', 'acnet_deploy')
  converted = convert.convert_state_dict(weights, 'rc56')
  assert converted.conv == 'normal' and converted.their_kind == 'acnet_deploy'
  conv1 = converted.params['stage2_block3']['conv1']
  np.testing.assert_array_equal(
    conv1['bn']['bias'], weights['stage2.block2.conv1.acb.fused_conv.bias']
  )
  np.testing.assert_array_equal(conv1['bn']['scale'], np.ones(32))
  stats = converted.batch_stats['stage2_block3']['conv1']['bn']
  np.testing.assert_array_equal(stats['var'], np.full(32, 1 - 1e-5, np.float32))


def without(weights: dict, key: str) -> dict:
  return {k: v for k, v in weights.items() if k != key}


ACNET = authors_weights('cfqkbnc', 'acnet')
WRONG_SHAPE = {**ACNET, 'conv1.acb.square_conv.weight': np.zeros((32, 3, 3, 3), np.float32)}


@pytest.mark.parametrize(
  'weights,model,message',
  [
    (
      without(ACNET, 'conv2.acb.ver_bn.running_var'),
      'cfqkbnc',
      "it has no key 'conv2.acb.ver_bn.running_var'",
    ),
    (
      {**ACNET, 'conv4.conv.weight': np.zeros(3)},
      'cfqkbnc',
      "its key 'conv4.conv.weight' is not one of that model's",
    ),
    (
      WRONG_SHAPE,
      'cfqkbnc',
      r"'conv1.acb.square_conv.weight' has shape \(32, 3, 3, 3\) where the model has "
      r'\(32, 3, 5, 5\)',
    ),
    (ACNET, 'vc', "not the authors' vc .*: it has no key 'linear2.bias'"),
    (without(ACNET, 'fc2.bias'), 'cfqkbnc', "it has no key 'fc2.bias' .the classifier."),
    (authors_weights('rc56', 'normal'), 'wrnc16', "it has no key 'conv1.weight'"),
    (ACNET, 'densenet40', 'the authors publish no densenet40 that this converter reads'),
  ],
)
def test_a_flawed_checkpoint_is_one_paragraph_naming_the_key_and_writes_nothing(
  weights, model, message, tmp_path
):
  path = save_hdf5(weights, tmp_path / 'finish.hdf5')
  with pytest.raises(InputError, match=message) as raised:
    convert.convert_file(path, model, str(tmp_path / 'run'))
  assert '\n' not in str(raised.value)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['finish.hdf5']


def test_files_and_workdirs_it_cannot_use_are_refused(tmp_path):
  with pytest.raises(InputError, match='no checkpoint file'):
    convert.convert_file(str(tmp_path / 'missing.pth'), 'cfqkbnc', str(tmp_path / 'run'))
  (tmp_path / 'weights.npz').write_bytes(b'')
  with pytest.raises(InputError, match='neither a .pth file'):
    convert.convert_file(str(tmp_path / 'weights.npz'), 'cfqkbnc', str(tmp_path / 'run'))
  (tmp_path / 'bad.hdf5').write_text('not hdf5')
  with pytest.raises(InputError, match='is not a readable HDF5 file'):
    convert.convert_file(str(tmp_path / 'bad.hdf5'), 'cfqkbnc', str(tmp_path / 'run'))
  path = save_hdf5(ACNET, tmp_path / 'finish.hdf5')
  (tmp_path / 'busy').mkdir()
  (tmp_path / 'busy' / 'notes.txt').write_text('')
  with pytest.raises(InputError, match='exists and is not an empty folder'):
    convert.convert_file(path, 'cfqkbnc', str(tmp_path / 'busy'))
  with pytest.raises(InputError, match='has 10 classes; name them with --class_names'):
    convert.write_converted_run(
      str(tmp_path / 'run'),
      convert.convert_state_dict(authors_weights('resnet18', 'normal', classes=10), 'resnet18'),
      None,
    )
  assert not (tmp_path / 'run').exists() and not (tmp_path / 'run.partial').exists()


@pytest.mark.full
def test_the_cli_converts_and_main_evaluates_the_run(tmp_path):
  checkpoint = save_hdf5(authors_weights('cfqkbnc', 'normal'), tmp_path / 'finish.hdf5')
  workdir = tmp_path / 'run'
  refused = run_command(
    'convert', f'--checkpoint={checkpoint}', '--model=vc', f'--workdir={workdir}'
  )
  assert refused.returncode == 1 and "not the authors' vc (DingXiaoH/ACNet)" in refused.stderr
  assert 'Traceback' not in refused.stderr and not workdir.exists()
  completed = run_command(
    'convert', f'--checkpoint={checkpoint}', '--model=cfqkbnc', f'--workdir={workdir}'
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert '--config=configs/cfqkbnc.py:normal_cosine' in completed.stdout
  images = make_image_folder(tmp_path / 'images', 1, 5, size=32, varied_modes=False)
  evaluated = run_command(
    'main',
    '--config=configs/cfqkbnc.py:normal_cosine',
    f'--workdir={workdir}',
    '--mode=eval',
    '--config.dataset=image_folder',
    f'--config.data_dir={images}',
    '--config.batch_size=10',
    '--config.eval_batch_size=25',
  )
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  report = json.loads((workdir / 'eval.json').read_text())
  assert report['step'] == 0 and report['num_examples'] == 50 and report['fused_matches']
  assert math.isfinite(report['loss'])
