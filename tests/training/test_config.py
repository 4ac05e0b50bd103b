"""Every bad config value is refused in one paragraph before anything is loaded
or written (README, When things go wrong)."""

from __future__ import annotations

import pytest

from acnet_jax.errors import InputError
from acnet_jax.training import loop
from acnet_jax.training.config import get_config, validate_config
from acnet_jax.training.trainer import Trainer, check_batch_sizes, create_mesh
from tests.support.runs import tiny_config


@pytest.mark.parametrize(
  'key,value,message',
  [
    (
      'model',
      'resnet56',
      "unknown model 'resnet56'; valid: alexnet, cfqkbnc, densenet40, "
      'mobilenet_v1, rc110, rc20, rc56, rc8, resnet18, resnet34, resnet50, vc, '
      'wrnc16',
    ),
    ('conv', 'deploy', "unknown conv 'deploy'; valid: normal, acnet, dbb, repvgg"),
    (
      'dataset',
      'imagenet',
      "unknown dataset 'imagenet'; valid: cifar10, cifar100, image_folder, "
      'synthetic, or a tfds image classification data set',
    ),
    ('lr_schedule', 'step', "unknown lr_schedule 'step'; valid: piecewise, cosine"),
    ('pipeline', 'disk', "unknown pipeline 'disk'; valid: auto, memory, stream"),
    ('dtype', 'float16', "unknown dtype 'float16'; valid: float32, bfloat16"),
    ('batch_size', 0, 'batch_size must be positive'),
    ('stop_agree_seconds', 0.0, 'stop_agree_seconds must be positive'),
    ('acb.impl', 'fused', "unknown acb.impl 'fused'; valid: branches, stacked"),
    ('acb.branches', ('ver', 'hor'), "must be distinct names from .* and include 'square'"),
    (
      'export_formats',
      'stablehlo,tflite',
      "unknown export format 'tflite'; valid: stablehlo, savedmodel",
    ),
  ],
)
def test_bad_config_values_are_refused_before_anything_is_written(key, value, message, tmp_path):
  config = tiny_config(**{key: value})
  with pytest.raises(InputError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_the_defaults_pass_the_check():
  validate_config(get_config())


def test_online_applies_to_the_re_parameterized_kinds_only(tmp_path):
  for conv in ('acnet', 'dbb', 'repvgg'):
    validate_config(tiny_config(conv=conv, online=True))
  with pytest.raises(
    InputError,
    match='online=True trains a re-parameterized conv kind '
    r"\(acnet, dbb, repvgg\) .* conv 'normal' has no branches",
  ):
    loop.train_and_evaluate(tiny_config(conv='normal', online=True), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_the_quantization_friendly_repvgg_block_has_no_online_form():
  validate_config(tiny_config(**{'conv': 'repvgg', 'repvgg.quantization_friendly': True}))
  with pytest.raises(InputError, match='quantization_friendly=True has no online form'):
    validate_config(
      tiny_config(**{'conv': 'repvgg', 'online': True, 'repvgg.quantization_friendly': True})
    )


def test_a_batch_the_devices_cannot_share_is_refused():
  with pytest.raises(InputError, match='batch_size=16 is not divisible by the 3 devices'):
    check_batch_sizes(tiny_config(), 3)
  with pytest.raises(InputError, match='eval_batch_size=10 is not divisible by the 4 devices'):
    check_batch_sizes(tiny_config(batch_size=8, eval_batch_size=10), 4)
  check_batch_sizes(tiny_config(), 2)


def test_a_batch_larger_than_the_training_split_is_refused():
  with pytest.raises(InputError, match='batch_size=128 is larger than the 64 training examples'):
    Trainer(tiny_config(batch_size=128), create_mesh())


def test_a_workdir_that_cannot_be_a_folder_is_refused(tmp_path):
  (tmp_path / 'file').write_text('not a folder')
  for workdir in (tmp_path / 'file', tmp_path / 'file' / 'run'):
    with pytest.raises(InputError, match=f'--workdir {workdir}'):
      loop.train_and_evaluate(tiny_config(), str(workdir))
  assert (tmp_path / 'file').read_text() == 'not a folder'
