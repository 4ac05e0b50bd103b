"""The training loop: train -> checkpoint -> evaluate, stops on a signal with
a checkpoint and resumes bitwise, stops on NaN, refuses another model's
checkpoints."""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from acnet_jax.errors import InputError
from acnet_jax.training import checkpointing, loop, metrics, stopping
from acnet_jax.training.lock import LOCK_FILE
from acnet_jax.training.trainer import create_model
from tests.conftest import TINY_RUN, TINY_RUN_STEPS
from tests.support.runs import final_state, tiny_config

# rc8 ACNet, 5 epochs of 4 steps, a log line per step, no evaluation until the end.
RESUMED = dict(
  conv='acnet',
  num_epochs=5,
  log_every_steps=1,
  eval_every_epochs=100,
  checkpoint_every_steps=4,
  lr_boundaries_epochs=(3,),
)
TOTAL_STEPS = 20


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  loop.train_and_evaluate(tiny_config(**RESUMED), str(workdir))
  return workdir


def assert_same_run(resumed, reference) -> None:
  config = tiny_config(**RESUMED)
  (a, a_step), (b, b_step) = final_state(resumed, config), final_state(reference, config)
  assert a_step == b_step == TOTAL_STEPS
  for key, value in b.items():
    np.testing.assert_array_equal(a[key], value, err_msg=key)  # Bitwise.
  assert json.loads((resumed / 'eval.json').read_text()) == json.loads(
    (reference / 'eval.json').read_text()
  )


def signal_at_step(monkeypatch, sig: signal.Signals, step: int) -> None:
  """Sends `sig` to this process when the metrics of `step` are written: a
  signal that arrives while step + 1 is in flight."""
  write = metrics.MetricWriter.write

  def write_then_signal(self, at_step, values):
    write(self, at_step, values)
    if at_step == step and 'train_loss' in values:
      signal.raise_signal(sig)

  monkeypatch.setattr(metrics.MetricWriter, 'write', write_then_signal)


def test_train_then_eval_reproduces_the_final_metrics(tiny_run, tmp_path):
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  config = tiny_config(**TINY_RUN)
  written = json.loads((workdir / 'eval.json').read_text())
  assert (written['step'], written['num_examples']) == (TINY_RUN_STEPS, 16)
  assert written['fused_matches'] and written['fused_max_rel_diff'] < 1e-4
  assert (written['top1'], written['top5']) == (written['fused_top1'], written['fused_top5'])

  (workdir / 'eval.json').unlink()
  again = loop.evaluate(config, str(workdir))
  assert json.loads((workdir / 'eval.json').read_text()) == again
  for key in ('step', 'num_examples', 'top1', 'top5', 'fused_top1', 'fused_top5'):
    assert again[key] == written[key], key
  for key in ('loss', 'fused_loss'):
    assert again[key] == pytest.approx(written[key], rel=1e-6), key

  # The fused deploy variables are a checkpoint of their own, and restore.
  deploy = ocp.StandardCheckpointer().restore(workdir / 'deploy' / str(TINY_RUN_STEPS))
  model = create_model(config, 'deploy')
  assert model.apply(deploy, jnp.zeros((2, 32, 32, 3)), train=False).shape == (2, 10)


@pytest.mark.full
@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_in_flight_and_resume_is_exact(
  sig, tmp_path, uninterrupted, monkeypatch
):
  workdir = tmp_path / 'run'
  signal_at_step(monkeypatch, sig, 4)
  config = tiny_config(**{**RESUMED, 'checkpoint_every_steps': 1000})
  with pytest.raises(
    stopping.TrainingInterrupted, match=rf'Stopped by {sig.name} at step (\d+);'
  ) as stop:
    loop.train_and_evaluate(config, str(workdir))
  stopped_at = int(re.search(r'at step (\d+)', str(stop.value)).group(1))
  # Signalled while step 5 ran: that step finishes, at most one more was queued.
  assert stopped_at in (5, 6)
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == [str(stopped_at)]
  assert not (workdir / 'eval.json').exists()

  monkeypatch.undo()
  loop.train_and_evaluate(config, str(workdir))
  assert_same_run(workdir, uninterrupted)


def damage(checkpoint) -> None:
  """Overwrites bytes in the middle of the largest file, as a failing disk
  would: Orbax itself reads such a file back without complaint."""
  largest = max((p for p in checkpoint.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(largest.read_bytes())
  middle = len(data) // 2
  data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
  largest.write_bytes(bytes(data))


@pytest.mark.full  # A run trained twice.
def test_a_damaged_newest_checkpoint_is_skipped_and_training_repeats_its_steps(
  tmp_path, uninterrupted, caplog
):
  workdir = shutil.copytree(uninterrupted, tmp_path / 'run')
  (workdir / 'eval.json').unlink()
  config = tiny_config(**RESUMED)
  steps = sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir())
  assert steps == [12, 16, 20]
  damage(workdir / 'checkpoints' / '20')

  # Eval uses the newest intact one and moves nothing.
  assert loop.evaluate(config, str(workdir))['step'] == 16
  assert 'Checkpoint of step 20 is damaged and was skipped' in caplog.text
  assert (workdir / 'checkpoints' / '20').is_dir()
  (workdir / 'eval.json').unlink()

  # Training sets the damaged one aside and repeats steps 17..20 exactly.
  loop.train_and_evaluate(config, str(workdir))
  assert (workdir / checkpointing.DAMAGED_DIR / '20').is_dir()
  assert_same_run(workdir, uninterrupted)


@pytest.mark.full  # A run of its own.
def test_no_intact_checkpoint_is_refused_and_nothing_is_deleted(tmp_path):
  config = tiny_config(num_epochs=1)
  loop.train_and_evaluate(config, str(tmp_path))
  (checkpoint,) = (tmp_path / 'checkpoints').iterdir()
  damage(checkpoint)
  for job in (loop.train_and_evaluate, loop.evaluate):
    with pytest.raises(InputError, match='reads back intact'):
      job(config, str(tmp_path))
    assert checkpoint.is_dir()


@pytest.mark.full  # 15 s: the fast tier stays under 5 min.
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config(learning_rate=1e12, checkpoint_every_steps=1, num_epochs=5)
  with pytest.raises(
    loop.NonFiniteLoss,
    match=r'(training loss is \S+ at|optimizer state of) step '
    r'\d+',
  ) as caught:
    loop.train_and_evaluate(config, str(tmp_path))
  bad_step = int(re.search(r'step (\d+)', str(caught.value)).group(1))
  manager = checkpointing.checkpoint_manager(str(tmp_path), config.keep_checkpoints)
  assert manager.latest_step() == bad_step - 1
  state, step = final_state(tmp_path, config)
  assert step == bad_step - 1 and all(np.all(np.isfinite(v)) for v in state.values())
  assert not (tmp_path / 'eval.json').exists()


def test_eval_of_an_empty_workdir_says_so(tmp_path):
  with pytest.raises(InputError, match='no checkpoint in'):
    loop.evaluate(tiny_config(), str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_a_checkpoint_of_another_model_or_kind_names_both_and_is_left_intact(tiny_run, tmp_path):
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  # The lock file names its last holder; everything else stays as it was.
  files = lambda: {p: p.stat().st_mtime_ns for p in workdir.rglob('*') if p.name != LOCK_FILE}
  before = files()
  for key, value, saved in [
    ('model', 'rc20', 'rc8'),
    ('conv', 'normal', 'acnet'),
    ('online', True, False),
  ]:
    # Allowed to change the config, the run is still refused another model's checkpoint.
    with pytest.raises(InputError, match=f'{key}={saved!r} but this config has {key}={value!r}'):
      loop.train_and_evaluate(
        tiny_config(**{**TINY_RUN, key: value}), str(workdir), allow_config_change=True
      )
  assert files() == before


def test_a_checkpoint_from_before_online_existed_is_an_offline_one():
  saved = {'model': 'rc8', 'conv': 'acnet', 'num_classes': 10}  # No 'online' key.
  checkpointing.check_identity(saved, tiny_config(), 4, 'DIR')
  with pytest.raises(InputError, match='is of online=False but this config has online=True'):
    checkpointing.check_identity(saved, tiny_config(online=True), 4, 'DIR')


def test_ctrl_c_while_waiting_for_a_compilation_interrupts_at_once():
  """What runs before the first step (the initial state, the step's
  compilation) runs in a thread: the main thread's wait takes the signal."""
  release = threading.Event()

  def compilation() -> None:  # One that takes a minute, Ctrl-C pressed as it starts.
    # Sent from the thread, so the main thread is already inside in_thread (a
    # timer could fire before it got there on a loaded machine).
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    release.wait(60)

  # Python's own Ctrl-C handler, as a command has it (a test before this one
  # in the same worker may have left another).
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  start = time.perf_counter()
  try:
    with pytest.raises(KeyboardInterrupt):
      loop.in_thread(compilation)
  finally:
    release.set()
    signal.signal(signal.SIGINT, previous)
  assert time.perf_counter() - start < 20  # Not the minute the work takes.


def test_errors_in_the_thread_reach_the_caller():
  with pytest.raises(ZeroDivisionError):
    loop.in_thread(lambda: 1 / 0)
  assert loop.in_thread(lambda: 42) == 42


def test_the_loss_is_logged_from_the_first_step():
  logged = [step for step in range(1, 400) if loop.is_log_step(step, 100)]
  assert logged == [1, 2, 4, 8, 16, 32, 64, 100, 200, 300]
  assert [step for step in range(1, 10) if loop.is_log_step(step, 1)] == list(range(1, 10))
