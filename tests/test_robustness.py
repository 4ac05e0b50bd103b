"""Crash safety, deterministic resume, and bad input: real subprocesses where
a signal or a crash is the point, one test per bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import flat, tiny_config

from acnet_jax import checkpointing, train
from acnet_jax.errors import InputError

ROOT = Path(__file__).parents[1]
# rc8 (ResNet-8) ACNet on 64 synthetic images, 4 steps an epoch, 20 steps in all.
RUN_FLAGS = [
    '--config=configs/rc56_acnet.py', '--config.model=rc8', '--config.dataset=synthetic',
    '--config.synthetic_examples=64', '--config.batch_size=16', '--config.eval_batch_size=16',
    '--config.num_epochs=5', '--config.log_every_steps=1', '--config.eval_every_epochs=100',
    '--config.warmup_epochs=0', '--config.lr_boundaries_epochs=(3,)']
RUN_CONFIG = dict(model='rc8', conv='acnet', dataset='synthetic', synthetic_examples=64,
                  batch_size=16, eval_batch_size=16, num_epochs=5, warmup_epochs=0,
                  lr_boundaries_epochs=(3,))
TOTAL_STEPS = 20


def start_cli(workdir: Path, flags: list[str]) -> subprocess.Popen:
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  env.pop('XLA_FLAGS', None)
  return subprocess.Popen([sys.executable, '-m', 'acnet_jax.main', f'--workdir={workdir}',
                           *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def start(workdir: Path, *extra: str) -> subprocess.Popen:
  return start_cli(workdir, [*RUN_FLAGS, *extra])


def finish(process: subprocess.Popen) -> str:
  try:
    return process.communicate(timeout=600)[0]
  finally:
    process.kill()


def wait_for_steps(workdir: Path, steps: int, process: subprocess.Popen) -> None:
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
      return
    time.sleep(0.05)
  raise AssertionError(f'training did not reach step {steps}: {finish(process)[-2000:]}')


def checkpoint_manager(workdir: Path, config):
  return checkpointing.checkpoint_manager(str(workdir), config.keep_checkpoints)


def final_state(workdir: Path):
  return final_state_of(workdir, tiny_config(**RUN_CONFIG))


def final_state_of(workdir: Path, config):
  """The newest checkpoint's variables and optimizer state by path, and its step."""
  trainer = train.Trainer(config, train.create_mesh())
  state = train.restore_or_initialize(checkpoint_manager(workdir, config), trainer)
  return flat((state.params, state.batch_stats, state.opt_state)), int(state.step)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory) -> Path:
  workdir = tmp_path_factory.mktemp('uninterrupted')
  process = start(workdir)
  output = finish(process)
  assert process.returncode == 0, output[-2000:]
  return workdir


def assert_same_run(resumed: Path, reference: Path) -> None:
  (a, a_step), (b, b_step) = final_state(resumed), final_state(reference)
  assert a_step == b_step == TOTAL_STEPS
  for key, value in b.items():
    np.testing.assert_array_equal(a[key], value, err_msg=key)  # Bitwise.
  assert json.loads((resumed / 'eval.json').read_text()) == \
      json.loads((reference / 'eval.json').read_text())


def stop_with(sig: signal.Signals, workdir: Path, after_steps: int) -> int:
  """Starts a run, sends `sig` after some steps; returns the step it stopped at."""
  process = start(workdir, '--config.checkpoint_every_steps=1000')
  wait_for_steps(workdir, after_steps, process)
  process.send_signal(sig)
  output = finish(process)
  assert process.returncode == 128 + sig, output[-2000:]
  stopped_at = int(output.split(f'Stopped by {sig.name} at step ')[1].split(';')[0])
  assert after_steps <= stopped_at < TOTAL_STEPS
  assert 'Run the same command again to resume' in output
  assert sorted(os.listdir(workdir / 'checkpoints')) == [str(stopped_at)]
  assert not (workdir / 'eval.json').exists()
  return stopped_at


def test_sigterm_saves_a_checkpoint_and_resume_is_exact(tmp_path, uninterrupted):
  workdir = tmp_path / 'run'
  stopped_at = stop_with(signal.SIGTERM, workdir, 4)
  output = finish(process := start(workdir, '--config.checkpoint_every_steps=1000'))
  assert process.returncode == 0, output[-2000:]
  assert f'Restored the checkpoint of step {stopped_at}' in output
  assert_same_run(workdir, uninterrupted)


def test_sigint_saves_a_checkpoint_too(tmp_path):
  stop_with(signal.SIGINT, tmp_path / 'run', 2)


def test_kill_9_during_saves_leaves_a_checkpoint_to_resume_from(tmp_path, uninterrupted):
  workdir = tmp_path / 'run'
  # A save at every other step, so the kill lands during or between (async) saves.
  process = start(workdir, '--config.checkpoint_every_steps=2')
  wait_for_steps(workdir, 8, process)
  process.kill()
  process.wait()
  config = tiny_config(**RUN_CONFIG)
  latest = checkpoint_manager(workdir, config).latest_step()
  assert latest is not None and latest >= 2

  output = finish(process := start(workdir, '--config.checkpoint_every_steps=2'))
  assert process.returncode == 0, output[-2000:]
  assert f'Restored the checkpoint of step {latest}' in output
  assert_same_run(workdir, uninterrupted)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config(learning_rate=1e12, checkpoint_every_steps=1, num_epochs=5)
  with pytest.raises(train.NonFiniteLoss, match=r'the training loss is \S+ at step \d+') \
      as caught:
    train.train_and_evaluate(config, str(tmp_path))
  bad_step = int(re.search(r'at step (\d+)', str(caught.value)).group(1))
  manager = checkpoint_manager(tmp_path, config)
  assert manager.latest_step() == bad_step - 1
  trainer = train.Trainer(config, train.create_mesh())
  state = train.restore_or_initialize(manager, trainer)
  assert all(np.all(np.isfinite(v)) for v in flat(state.params).values())
  assert not (tmp_path / 'eval.json').exists()


@pytest.mark.parametrize('key,value,message', [
    ('model', 'resnet56', "unknown model 'resnet56'; valid: alexnet, cfqkbnc, densenet40, "
                          "mobilenet_v1, rc110, rc20, rc56, rc8, resnet18, resnet34, resnet50, vc, "
                          "wrnc16"),
    ('conv', 'deploy', "unknown conv 'deploy'; valid: normal, acnet"),
    ('dataset', 'imagenet', "unknown dataset 'imagenet'; valid: cifar10, cifar100, image_folder"),
    ('lr_schedule', 'step', "unknown lr_schedule 'step'; valid: piecewise, cosine"),
    ('batch_size', 0, 'batch_size must be positive'),
    ('acb.impl', 'fused', "unknown acb.impl 'fused'; valid: branches, stacked"),
    ('export_formats', 'stablehlo,onnx',
     "unknown export format 'onnx'; valid: stablehlo, savedmodel"),
])
def test_bad_config_values_are_refused_before_anything_is_written(key, value, message, tmp_path):
  config = tiny_config()
  config.update_from_flattened_dict({key: value})
  with pytest.raises(InputError, match=message):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'acnet_jax.main', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_unknown_config_key_lists_the_valid_keys(tmp_path):
  completed = run_cli('--config=configs/rc56_acnet.py', f'--workdir={tmp_path}',
                      '--config.num_epoch=3')
  assert completed.returncode == 1
  assert 'Did you mean "num_epochs"' in completed.stderr
  assert 'Valid keys: acb.branch_bn, acb.branches, acb.gamma_init' in completed.stderr
  assert 'Traceback' not in completed.stderr
  assert not list(tmp_path.iterdir())


def test_unknown_preset_lists_the_valid_ones(tmp_path):
  completed = run_cli('--config=configs/rc56.py:acnet_lrs7', f'--workdir={tmp_path}')
  assert completed.returncode != 0
  assert 'valid: normal_lrs1, acnet_lrs1' in completed.stderr
  assert 'Traceback' not in completed.stderr


def test_cli_eval_of_an_empty_workdir_is_one_paragraph(tmp_path):
  completed = run_cli('--config=configs/rc56_acnet.py', f'--workdir={tmp_path}', '--mode=eval',
                      '--config.dataset=synthetic')
  assert completed.returncode == 1
  assert 'no checkpoint in' in completed.stderr and 'Traceback' not in completed.stderr
  assert not list(tmp_path.iterdir())


def test_checkpoint_of_another_model_names_both_and_is_left_intact(tmp_path):
  train.train_and_evaluate(tiny_config(num_epochs=1), str(tmp_path))
  before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
  with pytest.raises(InputError, match="model='rc8' but this config has model='rc20'"):
    train.train_and_evaluate(tiny_config(model='rc20', num_epochs=1), str(tmp_path))
  after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
  assert after == before


def damage(checkpoint: Path) -> None:
  """Overwrites bytes in the middle of the largest file, as a failing disk
  would: Orbax itself reads such a file back without complaint."""
  largest = max((p for p in checkpoint.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(largest.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
  largest.write_bytes(bytes(data))


def test_a_damaged_newest_checkpoint_is_set_aside_and_training_resumes_from_the_one_before(
    tmp_path, uninterrupted):
  workdir = tmp_path / 'run'
  output = finish(process := start(workdir, '--config.checkpoint_every_steps=4'))
  assert process.returncode == 0, output[-2000:]
  steps = sorted(int(s) for s in os.listdir(workdir / 'checkpoints'))
  assert steps[-2:] == [16, 20]
  damage(workdir / 'checkpoints' / '20')

  # Eval uses the newest intact one and moves nothing.
  completed = run_cli(*RUN_FLAGS, f'--workdir={workdir}', '--mode=eval')
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert 'Checkpoint of step 20 is damaged and was skipped' in completed.stderr
  assert json.loads((workdir / 'eval.json').read_text())['step'] == 16
  assert (workdir / 'checkpoints' / '20').is_dir()

  # Training sets the damaged one aside and repeats steps 17..20 exactly.
  output = finish(process := start(workdir, '--config.checkpoint_every_steps=4'))
  assert process.returncode == 0, output[-2000:]
  assert 'Restored the checkpoint of step 16' in output and 'Traceback' not in output
  assert (workdir / 'damaged_checkpoints' / '20').is_dir()
  assert_same_run(workdir, uninterrupted)


def test_no_intact_checkpoint_is_one_paragraph_and_nothing_is_deleted(tmp_path):
  flags = [*RUN_FLAGS, f'--workdir={tmp_path}', '--config.num_epochs=1']
  assert run_cli(*flags).returncode == 0
  (checkpoint,) = (tmp_path / 'checkpoints').iterdir()
  damage(checkpoint)
  for mode in ('train', 'eval'):
    completed = run_cli(*flags, f'--mode={mode}')
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert 'reads back intact' in completed.stderr and 'Traceback' not in completed.stderr
    assert checkpoint.is_dir()


@pytest.mark.parametrize('source,message', [
    (None, "no config file 'configs/rc56_acnt.py'. Config files in configs/: alexnet,"),
    ('x = (\n', "does not load: SyntaxError: '(' was never closed"),
    ('x = 1\n', 'defines no get_config()'),
    ('def get_config():\n  return 1 / 0\n', 'does not load: ZeroDivisionError'),
])
def test_a_config_file_that_does_not_load_is_one_paragraph(source, message, tmp_path):
  config = 'configs/rc56_acnt.py'
  if source is not None:
    config = tmp_path / 'config.py'
    config.write_text(source)
  completed = run_cli(f'--config={config}', f'--workdir={tmp_path / "run"}')
  assert completed.returncode == 1
  assert message in completed.stderr and 'Traceback' not in completed.stderr, completed.stderr
  assert not (tmp_path / 'run').exists()


def test_a_workdir_that_cannot_be_a_folder_is_one_paragraph(tmp_path):
  (tmp_path / 'file').write_text('not a folder')
  for workdir in (tmp_path / 'file', tmp_path / 'file' / 'run'):
    completed = run_cli(*RUN_FLAGS, f'--workdir={workdir}')
    assert completed.returncode == 1, completed.stderr[-2000:]
    assert f'--workdir {workdir}' in completed.stderr and 'Traceback' not in completed.stderr
  assert (tmp_path / 'file').read_text() == 'not a folder'
