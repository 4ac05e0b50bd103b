"""Training on the streaming path, end to end: through the CLI from an image
folder of mixed sizes, from tfds imagenet2012 (mocked), exact resume after
kill -9, and two processes that each read half of every batch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from acnet_jax.training import presets
from acnet_jax.training.loop import train_and_evaluate
from tests.support.images import make_image_folder, require_archive
from tests.support.numerics import MODEL_RTOL
from tests.support.runs import ROOT, final_state, finish, start_main, wait_for_steps
from tests.training.test_distributed import (
  cli,
  environment,
  outputs_of,
  start_two_processes,
  train_losses,
)
from tests.training.test_presets import load_config

pytestmark = pytest.mark.full
# rc8 on 16 px crops of a 10-class folder of 80 training images of 40-400 px:
# 5 steps of 16 an epoch, 15 in all.
STREAM_FLAGS = [
  '--config=configs/rc56_acnet.py',
  '--config.model=rc8',
  '--config.dataset=image_folder',
  '--config.image_size=16',
  '--config.batch_size=16',
  '--config.eval_batch_size=16',
  '--config.num_epochs=3',
  '--config.log_every_steps=1',
  '--config.eval_every_epochs=100',
  '--config.warmup_epochs=0',
  '--config.lr_boundaries_epochs=(2,)',
  '--config.data_workers=2',
]
TOTAL_STEPS = 15


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
  return make_image_folder(tmp_path_factory.mktemp('images'), train_per_class=8, eval_per_class=4)


def stream_config(folder: Path, **overrides):
  config = presets.preset('rc56', 'acnet_lrs1')
  config.update(
    dict(
      model='rc8',
      dataset='image_folder',
      data_dir=str(folder),
      image_size=16,
      batch_size=16,
      eval_batch_size=16,
      num_epochs=3,
      warmup_epochs=0,
      lr_boundaries_epochs=(2,),
      data_workers=2,
    )
  )
  config.update(overrides)
  return config


def test_a_folder_of_mixed_sizes_streams_and_resumes_exactly_after_kill_9(folder, tmp_path):
  flags = [*STREAM_FLAGS, f'--config.data_dir={folder}', '--config.checkpoint_every_steps=2']
  reference = tmp_path / 'reference'
  output = finish(process := start_main(reference, flags))
  assert process.returncode == 0, output[-3000:]
  assert 'data: image_folder' in output and 'streamed' in output

  killed = tmp_path / 'killed'
  process = start_main(killed, flags)
  wait_for_steps(killed, 7, process)
  process.kill()
  process.wait()
  output = finish(process := start_main(killed, flags))
  assert process.returncode == 0, output[-3000:]
  assert 'Restored the checkpoint of step' in output

  config = stream_config(folder)
  (a, a_step), (b, b_step) = final_state(killed, config), final_state(reference, config)
  assert a_step == b_step == TOTAL_STEPS
  for key, value in b.items():
    assert (a[key] == value).all(), key  # Bitwise.
  result = json.loads((reference / 'eval.json').read_text())
  assert json.loads((killed / 'eval.json').read_text()) == result
  assert result['num_examples'] == 40 and result['fused_matches']


def test_the_imagenet_command_streams_imagenet2012_from_tfds(tmp_path):
  """configs/resnet18_acnet.py as the README's ImageNet command runs it, with
  tfds's mock standing in for a prepared imagenet2012 (1000 classes,
  evaluation on its 'validation' split), at 32 px and a batch of 4."""
  config = load_config('resnet18_acnet.py')
  config.update(
    dict(
      image_size=32,
      batch_size=4,
      eval_batch_size=4,
      num_epochs=1,
      log_every_steps=1,
      data_workers=2,
    )
  )
  with tfds.testing.mock_data(num_examples=8):
    result = train_and_evaluate(config, str(tmp_path))
  assert result['step'] == 2 and result['num_examples'] == 8
  assert result['fused_matches']


@pytest.mark.needs_processes
def test_two_processes_each_stream_half_of_every_batch(folder, tmp_path):
  flags = [
    *STREAM_FLAGS,
    f'--config.data_dir={folder}',
    '--config.num_epochs=1',
    '--config.checkpoint_every_steps=100',
  ]
  single = tmp_path / 'single'
  subprocess.run(
    cli(single, flags), cwd=ROOT, env=environment(2), check=True, timeout=600, capture_output=True
  )
  multi = tmp_path / 'multi'
  outputs_of(start_two_processes(cli(multi, flags)))
  # The first step sees the same images: its loss differs only by the order
  # of BN sums (MODEL_RTOL); a wrong share would change the images, and the
  # loss by far more. Later steps drift apart by rounding (test_train).
  one, two = train_losses(single), train_losses(multi)
  assert len(one) == len(two) == 5
  assert two[0] == pytest.approx(one[0], rel=MODEL_RTOL)
  a = json.loads((single / 'eval.json').read_text())
  b = json.loads((multi / 'eval.json').read_text())
  assert a['num_examples'] == b['num_examples'] == 40


@pytest.mark.needs_cifar
def test_streamed_real_photos_are_learned_above_chance(tmp_path):
  """ResNet-8 on real CIFAR-10 photos upscaled to 40-96 px, streamed with
  RandomResizedCrop to 32 px: above the 10% of chance on held-out images."""
  require_archive()
  data = make_image_folder(
    tmp_path / 'images', train_per_class=150, eval_per_class=50, size=(40, 96)
  )
  workdir = tmp_path / 'run'
  flags = [
    *STREAM_FLAGS,
    f'--config.data_dir={data}',
    '--config.image_size=32',
    '--config.batch_size=50',
    '--config.eval_batch_size=100',
    '--config.num_epochs=6',
    '--config.log_every_steps=10',
    '--config.lr_boundaries_epochs=(4,)',
    '--config.model=rc8',
    '--config.conv=normal',
  ]
  output = finish(process := start_main(workdir, flags))
  assert process.returncode == 0, output[-3000:]
  result = json.loads((workdir / 'eval.json').read_text())
  print(f'streamed ResNet-8: test top-1 {result["top1"]:.3f} on {result["num_examples"]}')
  assert result['num_examples'] == 500 and result['top1'] >= 0.2


def test_an_unreadable_file_met_while_streaming_is_one_paragraph(folder, tmp_path):
  """The decoding threads' error reaches the CLI as one paragraph naming the file."""
  data = tmp_path / 'images'
  shutil.copytree(folder, data)
  first_class = sorted((data / 'train').iterdir())[0]  # airplane, or class0 without ../shared
  (first_class / 'zz_broken.jpg').write_bytes(b'not an image')
  workdir = tmp_path / 'run'
  output = finish(process := start_main(workdir, [*STREAM_FLAGS, f'--config.data_dir={data}']))
  assert process.returncode == 1, output[-3000:]
  assert f'train/{first_class.name}/zz_broken.jpg is not a readable image' in output
  assert 'Traceback' not in output
