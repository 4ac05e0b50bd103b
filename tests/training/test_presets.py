"""Presets: every try_arg of the original code, exactly, and each one its
record in presets.PRESETS and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from acnet_jax.training import optim, presets
from acnet_jax.training.config import flatten, get_config, trajectory_changes
from tests.support.preset_table import CONFIG_DIR, load_config_file


def load_config(filename: str, *args: str):
  return load_config_file(CONFIG_DIR / filename, *args)


@pytest.mark.parametrize('row', presets.PRESETS, ids=lambda row: f'{row.model}_{row.recipe}')
def test_a_preset_is_its_record_and_nothing_else(row):
  """Every value a preset changes is in its row: no rule in code adds one."""
  defaults = flatten(get_config())
  assert set(row.values) <= set(defaults), 'a key the config does not have'
  for try_arg in row.try_args:
    config = flatten(presets.preset(row.model, try_arg))
    changed = {key: value for key, value in config.items() if value != defaults[key]}
    named = {'model': row.model, 'conv': try_arg.split('_')[0], 'try_arg': try_arg}
    expected = {**named, **row.values}
    assert changed == {key: value for key, value in expected.items() if value != defaults[key]}
    assert all(config[key] == value for key, value in expected.items())


def test_rc56_presets_are_lrs1():
  for conv in ('normal', 'acnet'):
    config = load_config(f'rc56_{conv}.py')
    assert (config.model, config.conv, config.try_arg) == ('rc56', conv, f'{conv}_lrs1')
    assert (config.batch_size, config.weight_decay, config.learning_rate, config.num_epochs) == (
      64,
      1e-4,
      0.1,
      500,
    )
    assert tuple(config.lr_boundaries_epochs) == (100, 200, 300, 400)
    assert config.lr_decay_factor == 0.1
    assert (config.warmup_epochs, config.warmup_factor) == (5, 1.0)
    assert not config.weight_decay_on_bn_and_bias


def test_wrnc16_presets_are_lrs2():
  for conv in ('normal', 'acnet'):
    config = load_config(f'wrnc16_{conv}.py')
    assert (config.model, config.conv, config.try_arg) == ('wrnc16', conv, f'{conv}_lrs2')
    assert (config.batch_size, config.weight_decay, config.learning_rate, config.num_epochs) == (
      128,
      5e-4,
      0.1,
      360,
    )
    assert tuple(config.lr_boundaries_epochs) == (90, 180, 240, 300)
    assert config.lr_decay_factor == 0.2


@pytest.mark.parametrize(
  'filename,lr,epochs,wd',
  [
    ('rc56_acnet_cosine.py', 0.2, 400, 1e-4),
    ('wrnc16_acnet_cosine.py', 0.1, 400, 5e-4),
    ('cfqkbnc_acnet.py', 0.1, 150, 1e-4),
    ('vc_acnet.py', 0.1, 400, 1e-4),
    ('rc110_acnet.py', 0.2, 400, 1e-4),
  ],
)
def test_later_recipe_presets(filename, lr, epochs, wd):
  config = load_config(filename)
  assert (config.lr_schedule, config.batch_size, config.warmup_epochs) == ('cosine', 128, 0)
  assert (config.learning_rate, config.num_epochs, config.weight_decay) == (lr, epochs, wd)
  assert config.acb.gamma_init == 0.333
  assert config.weight_decay_on_bn_and_bias and config.bias_lr_factor == 2.0
  assert load_config(filename.replace('acnet', 'normal')).conv == 'normal'


def test_densenet_presets_are_the_standard_recipe():
  config = load_config('densenet40_acnet.py')
  assert (config.batch_size, config.num_epochs, config.learning_rate, config.weight_decay) == (
    64,
    300,
    0.1,
    1e-4,
  )
  assert (config.lr_schedule, tuple(config.lr_boundaries_epochs), config.lr_decay_factor) == (
    'piecewise',
    (150, 225),
    0.1,
  )


def test_cifar100_presets():
  config = load_config('vc.py', 'acnet_cosine_cifar100')
  assert (config.dataset, config.num_classes, config.model) == ('cifar100', 100, 'vc')
  assert load_config('rc56.py', 'normal_lrs1_cifar100').num_classes == 100


def test_try_arg_as_config_argument_equals_the_named_shortcut():
  assert load_config('rc56.py', 'acnet_lrs1') == load_config('rc56_acnet.py')
  assert load_config('wrnc16.py', 'normal_lrs2') == load_config('wrnc16_normal.py')
  assert load_config('rc56.py', 'normal_cosine') == load_config('rc56_normal_cosine.py')


@pytest.mark.parametrize('conv', ['dbb', 'repvgg'])
def test_dbb_and_repvgg_take_the_recipes_of_acnet(conv):
  config = load_config('cfqkbnc.py', f'{conv}_cosine')
  expected = load_config('cfqkbnc.py', 'acnet_cosine')
  expected.update(dict(conv=conv, try_arg=f'{conv}_cosine'))
  assert config == expected


def test_unknown_try_arg_lists_the_models_valid_ones():
  with pytest.raises(
    ValueError, match='valid: normal_lrs1, acnet_lrs1, dbb_lrs1, repvgg_lrs1, normal_lrs2'
  ):
    load_config('rc56.py', 'acnet_lrs9')
  with pytest.raises(
    ValueError, match=r'densenet40; valid: .*repvgg_densenet \(each also with _cifar100\)$'
  ):
    load_config('densenet40.py', 'acnet_cosine')
  with pytest.raises(ValueError, match='no presets for rc8; the models with presets: cfqkbnc, vc,'):
    presets.preset('rc8', 'acnet_lrs1')


@pytest.mark.parametrize('model', presets.IMAGENET_MODELS)
def test_imagenet_presets_are_the_authors_recipe(model):
  config = load_config(f'{model}_acnet.py')
  assert load_config(f'{model}.py', 'acnet_imagenet') == config
  assert (config.model, config.conv, config.dataset, config.num_classes) == (
    model,
    'acnet',
    'imagenet2012',
    1000,
  )
  assert (
    config.batch_size,
    config.learning_rate,
    config.num_epochs,
    config.lr_schedule,
    config.warmup_epochs,
  ) == (256, 0.1, 100, 'cosine', 0)
  assert (
    config.weight_decay,
    config.weight_decay_on_bn_and_bias,
    config.bias_lr_factor,
    config.acb.gamma_init,
    config.label_smoothing,
  ) == (1e-4, True, 2.0, 1.0, 0.0)
  assert (config.image_size, tuple(config.pixel_mean), tuple(config.pixel_std)) == (
    224,
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
  )
  assert load_config(f'{model}_normal.py').conv == 'normal'


def test_the_imagenet_learning_rate_scales_with_the_batch():
  config = load_config('resnet18_acnet.py')
  assert optim.base_learning_rate(config) == 0.1
  config.batch_size = 64
  assert optim.base_learning_rate(config) == pytest.approx(0.025)
  schedule = optim.create_lr_schedule(config, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.025)
  assert optim.base_learning_rate(load_config('rc56_acnet.py')) == 0.1  # CIFAR: unscaled.


def test_imagenet_models_take_only_the_imagenet_recipe():
  with pytest.raises(
    ValueError,
    match='resnet18; valid: normal_imagenet, acnet_imagenet, dbb_imagenet, repvgg_imagenet$',
  ):
    load_config('resnet18.py', 'acnet_cosine')
  with pytest.raises(ValueError, match="unknown try_arg 'acnet_imagenet' for rc56"):
    load_config('rc56.py', 'acnet_imagenet')
  with pytest.raises(ValueError, match='trains on imagenet2012: _cifar100 is for the CIFAR-10'):
    load_config('resnet18.py', 'acnet_imagenet_cifar100')


def test_every_preset_file_is_a_record_of_the_table():
  """configs/*.py only name a record (and first_run.py changes one, under its
  own name); the values are the table's."""
  files = sorted(p.name for p in CONFIG_DIR.glob('*.py'))
  assert len(files) == 40
  for filename in set(files) - {'default.py', 'first_run.py'}:
    config = load_config(filename)
    assert config == presets.preset(config.model, config.try_arg), filename
    assert config.name == ''


def test_the_first_run_is_labelled_by_name_and_keeps_its_try_arg():
  config = load_config('first_run.py')
  assert (config.name, config.try_arg, config.model) == ('first_run', 'acnet_cosine', 'cfqkbnc')
  # The label is outside the trajectory: a resume may change it.
  changes = trajectory_changes(presets.preset('cfqkbnc', 'acnet_cosine'), config)
  assert set(changes) == {'dataset', 'max_train_examples', 'batch_size', 'num_epochs'}


def test_installing_adds_only_acnet_jax_to_the_import_namespace(tmp_path):
  """The presets are config files loaded by path; `configs` is no package, so
  another project's `configs` keeps working beside this one."""
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  completed = subprocess.run(
    [
      sys.executable,
      '-c',
      'import importlib.util as u, acnet_jax.training.presets as p; '
      'print(u.find_spec("configs"), u.find_spec("tests"), p.__name__)',
    ],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  assert completed.stdout.split() == ['None', 'None', 'acnet_jax.training.presets']
