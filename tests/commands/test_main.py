"""python -m acnet_jax.main: its flags and config errors in one paragraph (parsed
in this process), and the whole job through real subprocesses where a crash,
a signal or the command line itself is the point (the full tier)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from acnet_jax import create_model, main
from tests.support import killed_saving
from tests.support.images import make_image_folder
from tests.support.runs import (
  ROOT,
  TINY_FLAGS,
  cli_environment,
  final_state,
  finish,
  run_command,
  start_main,
  tiny_config,
  wait_for_steps,
)


def parse_error(monkeypatch, *args: str) -> str:
  """The message main's parser exits with, as in a fresh process: config_flags
  reads the overrides from sys.argv, and executes a config file into the
  module of the one it loaded before."""
  monkeypatch.setattr(sys, 'argv', ['main', *args])
  monkeypatch.delitem(sys.modules, 'config_config', raising=False)
  with pytest.raises(SystemExit) as exited:
    main.parse_flags(sys.argv)
  return str(exited.value.code)


def test_a_misspelt_config_key_is_one_clean_paragraph(tmp_path, monkeypatch):
  message = parse_error(
    monkeypatch,
    '--config=configs/rc56_acnet.py',
    f'--workdir={tmp_path}',
    '--config.learnig_rate=3',
  )
  assert message.startswith(
    'FATAL: --config.learnig_rate names no config key. Did you mean '
    '--config.learning_rate? Valid keys: acb.branch_bn, acb.branches,'
  )
  assert '\n' not in message and '\\' not in message and "'" not in message


def test_an_unknown_preset_lists_the_valid_ones(tmp_path, monkeypatch):
  message = parse_error(monkeypatch, '--config=configs/rc56.py:acnet_lrs7', f'--workdir={tmp_path}')
  assert 'valid: normal_lrs1, acnet_lrs1' in message and 'Traceback' not in message


@pytest.mark.parametrize(
  'source,message',
  [
    (None, "no config file 'configs/rc56_acnt.py'. Config files in configs/: alexnet,"),
    ('x = (\n', "does not load: SyntaxError: '(' was never closed"),
    ('x = 1\n', 'defines no get_config()'),
    ('def get_config():\n  return 1 / 0\n', 'does not load: ZeroDivisionError'),
  ],
)
def test_a_config_file_that_does_not_load_is_one_paragraph(source, message, tmp_path, monkeypatch):
  config = 'configs/rc56_acnt.py'
  if source is not None:
    config = tmp_path / 'config.py'
    config.write_text(source)
  error = parse_error(monkeypatch, f'--config={config}', f'--workdir={tmp_path / "run"}')
  assert message in error and 'Traceback' not in error, error


# ---------------------------------------------------------------- full tier

# rc8 ACNet, 5 epochs of 4 steps, a log line per step.
RESUME_FLAGS = [
  *TINY_FLAGS,
  '--config.num_epochs=5',
  '--config.log_every_steps=1',
  '--config.eval_every_epochs=100',
  '--config.lr_boundaries_epochs=(3,)',
]
RESUME_CONFIG = dict(
  conv='acnet', num_epochs=5, lr_boundaries_epochs=(3,), log_every_steps=1, eval_every_epochs=100
)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory) -> Path:
  """The resume runs' flags, trained without a break."""
  reference = tmp_path_factory.mktemp('reference') / 'run'
  output = finish(process := start_main(reference, RESUME_FLAGS))
  assert process.returncode == 0, output[-2000:]
  return reference


def assert_same_run(workdir: Path, reference: Path) -> None:
  """Bitwise the same final state and the same evaluation."""
  config = tiny_config(**RESUME_CONFIG)
  (a, a_step), (b, b_step) = final_state(workdir, config), final_state(reference, config)
  assert a_step == b_step == 20
  for key, value in b.items():
    np.testing.assert_array_equal(a[key], value, err_msg=key)
  assert json.loads((workdir / 'eval.json').read_text()) == json.loads(
    (reference / 'eval.json').read_text()
  )


@pytest.mark.full
@pytest.mark.parametrize('moment', killed_saving.MOMENTS)
def test_kill_9_during_the_save_of_step_n_resumes_from_the_save_before(
  moment, reference_run, tmp_path
):
  """SIGKILL at an exact point of step 4's save (tests/support/killed_saving.py):
  its half-written folder is never used, step 2 is restored and the run ends
  as one without a break."""
  workdir = tmp_path / 'run'
  flags = [*RESUME_FLAGS, '--config.checkpoint_every_steps=2']
  process = subprocess.Popen(
    [
      sys.executable,
      '-m',
      'tests.support.killed_saving',
      '4',
      moment,
      f'--workdir={workdir}',
      *flags,
    ],
    cwd=ROOT,
    env=cli_environment(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  output = finish(process)
  assert process.returncode == -signal.SIGKILL, output[-2000:]
  assert ocp.CheckpointManager(workdir / 'checkpoints').all_steps() == [2]
  assert (workdir / 'checkpoints' / '4.orbax-checkpoint-tmp').is_dir()  # Half-written.

  output = finish(process := start_main(workdir, flags))
  assert process.returncode == 0, output[-2000:]
  assert 'Restored the checkpoint of step 2' in output
  assert_same_run(workdir, reference_run)


@pytest.mark.full
def test_kill_9_at_any_moment_of_saves_leaves_a_checkpoint_to_resume_from_exactly(
  reference_run, tmp_path
):
  workdir = tmp_path / 'run'
  # A save at every other step, so the kill lands during or between (async) saves.
  flags = [*RESUME_FLAGS, '--config.checkpoint_every_steps=2']
  process = start_main(workdir, flags)
  wait_for_steps(workdir, 8, process)
  process.kill()
  process.wait()
  latest = ocp.CheckpointManager(workdir / 'checkpoints').latest_step()
  assert latest is not None and latest >= 2

  output = finish(process := start_main(workdir, flags))
  assert process.returncode == 0, output[-2000:]
  assert f'Restored the checkpoint of step {latest}' in output
  assert_same_run(workdir, reference_run)


@pytest.mark.full
def test_sigterm_to_the_cli_exits_143_with_a_checkpoint(tmp_path):
  workdir = tmp_path / 'run'
  process = start_main(workdir, [*RESUME_FLAGS, '--config.checkpoint_every_steps=1000'])
  wait_for_steps(workdir, 3, process)
  process.send_signal(signal.SIGTERM)
  output = finish(process)
  assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
  stopped_at = int(output.split('Stopped by SIGTERM at step ')[1].split(';')[0])
  assert 'Run the same command again to resume' in output
  assert sorted(os.listdir(workdir / 'checkpoints')) == [str(stopped_at)]


@pytest.mark.full
def test_the_cli_says_config_errors_in_one_paragraph(tmp_path):
  completed = run_command(
    'main', '--config=configs/rc56_acnet.py', f'--workdir={tmp_path}', '--config.num_epoch=3'
  )
  assert completed.returncode == 1
  assert 'Did you mean --config.num_epochs?' in completed.stderr
  assert 'Traceback' not in completed.stderr and not list(tmp_path.iterdir())
  completed = run_command('main', *TINY_FLAGS, f'--workdir={tmp_path}', '--mode=eval')
  assert completed.returncode == 1
  assert 'no checkpoint in' in completed.stderr and 'Traceback' not in completed.stderr


# Every CIFAR model with its recipe. cfqkbnc (5x5 convs) in the full tier; the
# others take 1-15 min each to compile here, so they are marked slow. At a
# small learning rate: after two steps at the recipe's (0.2 at batch 16),
# rc110 dbb's eval-mode activations reach 5e42, past float32's range, and both
# the trained and the fused logits are garbage (in float64 they agree to 9e-8).
CIFAR_PRESETS = [
  pytest.param('cfqkbnc', 'cosine', marks=pytest.mark.full),
  *(
    pytest.param(model, recipe, marks=pytest.mark.slow)
    for model, recipe in [
      ('vc', 'cosine'),
      ('densenet40', 'densenet'),
      ('rc56', 'cosine'),
      ('wrnc16', 'cosine'),
      ('rc110', 'cosine'),
    ]
  ),
]


@pytest.mark.parametrize('model,recipe', CIFAR_PRESETS)
@pytest.mark.parametrize('conv', ['dbb', 'repvgg'])
def test_cli_trains_the_new_kinds_and_fuses_them_exactly(conv, model, recipe, tmp_path):
  """The try_arg route, two steps."""
  completed = run_command(
    'main',
    f'--config=configs/{model}.py:{conv}_{recipe}',
    f'--workdir={tmp_path}',
    '--config.dataset=synthetic',
    '--config.synthetic_examples=32',
    '--config.batch_size=16',
    '--config.eval_batch_size=16',
    '--config.num_epochs=1',
    '--config.eval_every_epochs=1',
    '--config.log_every_steps=1',
    '--config.learning_rate=0.01',
    timeout=3600,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  result = json.loads((tmp_path / 'eval.json').read_text())
  assert (result['step'], result['num_examples']) == (2, 8)
  assert result['fused_matches'] and result['fused_max_rel_diff'] < 1e-4
  assert (result['top1'], result['top5']) == (result['fused_top1'], result['fused_top5'])
  assert json.loads((tmp_path / 'config.json').read_text())['conv'] == conv
  # The deploy variables saved at the end are those of the model's normal deploy form.
  deploy = ocp.StandardCheckpointer().restore(tmp_path / 'deploy' / '2')
  normal_deploy = jax.eval_shape(
    lambda: create_model(model, 'deploy').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  )
  for collection in ('params', 'batch_stats'):
    assert jax.tree.map(jnp.shape, deploy.get(collection, {})) == jax.tree.map(
      jnp.shape, normal_deploy.get(collection, {})
    ), collection


@pytest.mark.full
def test_a_second_launch_on_a_busy_workdir_refuses_naming_both(tmp_path):
  workdir = tmp_path / 'run'
  # 400 steps: the first run is still training when the second one starts.
  first = start_main(
    workdir, [*RESUME_FLAGS, '--config.num_epochs=100', '--config.checkpoint_every_steps=1000']
  )
  wait_for_steps(workdir, 2, first)
  second = run_command('main', *TINY_FLAGS, f'--workdir={workdir}', '--config.num_epochs=9')
  assert second.returncode == 1, second.stderr[-2000:]
  assert f'{workdir} is in use by another run (process {first.pid} on ' in second.stderr
  assert 'Traceback' not in second.stderr
  output = finish(first)
  assert first.returncode == 0, output[-2000:]
  assert json.loads((workdir / 'eval.json').read_text())['step'] == 400
  assert json.loads((workdir / 'config.json').read_text())['num_epochs'] == 100


@pytest.mark.full
def test_a_three_class_folder_trains_and_evaluates_through_the_cli(tmp_path):
  folder = make_image_folder(tmp_path / 'data', 8, 4, num_classes=3, size=32)
  completed = run_command(
    'main',
    *TINY_FLAGS,
    f'--workdir={tmp_path / "run"}',
    '--config.dataset=image_folder',
    f'--config.data_dir={folder}',
    '--config.num_classes=3',
    '--config.batch_size=8',
    '--config.eval_batch_size=8',
    '--config.num_epochs=2',
  )
  assert completed.returncode == 0, completed.stderr[-2000:]
  result = json.loads((tmp_path / 'run' / 'eval.json').read_text())
  assert result['num_examples'] == 12 and result['top3'] == 1.0 and result['fused_matches']


@pytest.mark.full
def test_eval_of_a_run_reads_the_data_the_run_recorded(tiny_run, tmp_path):
  """The preset says cifar10 (a download); the run trained on synthetic data."""
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  (workdir / 'eval.json').unlink()
  completed = run_command(
    'main',
    '--config=configs/rc56_acnet.py',
    '--config.model=rc8',
    f'--workdir={workdir}',
    '--mode=eval',
    timeout=120,
  )
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert 'data: synthetic' in completed.stderr
  assert json.loads((workdir / 'eval.json').read_text())['step'] == 4


@pytest.mark.full
def test_ctrl_c_before_training_starts_exits_at_once_saving_nothing(tmp_path):
  """ResNet-56 ACNet: seconds of loading and compiling before the first step."""
  workdir = tmp_path / 'run'
  process = start_main(
    workdir,
    [
      '--config=configs/rc56_acnet.py',
      '--config.dataset=synthetic',
      '--config.synthetic_examples=256',
    ],
  )
  time.sleep(8)  # Past the imports: loading, initialising or compiling.
  process.send_signal(signal.SIGINT)
  signalled = time.time()
  output = finish(process)
  assert process.returncode == 128 + signal.SIGINT, output[-2000:]
  assert time.time() - signalled < 5, output[-2000:]
  assert 'nothing more was saved' in output
  assert not (workdir / 'checkpoints').exists() or not list((workdir / 'checkpoints').iterdir())
