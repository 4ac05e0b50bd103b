"""The two jobs of `main`: `train_and_evaluate(config, workdir)` (the training
loop) and `evaluate(config, workdir)`.

Data flow: config -> `Trainer` (feed, compiled steps) -> train steps -> Orbax
checkpoints -> evaluation of the trained model and its `fuse_params` deploy
model, side by side -> the deploy variables (and, with export_formats, the
exported deploy model).

The loop adds nothing to a step but its dispatch: at most two steps are in
flight (it waits for the one before), metrics are fetched at log steps, the
processes agree on stopping every few seconds (`stopping.StopAgreement`),
and the state is checked for finiteness only before it is saved.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from jax.experimental import multihost_utils

from acnet_jax.data import feeds
from acnet_jax.deploy import artifacts
from acnet_jax.errors import InputError, TrainingError
from acnet_jax.training import checkpointing, stopping
from acnet_jax.training import metrics as metrics_lib
from acnet_jax.training import workdir as runs
from acnet_jax.training.config import trajectory_changes, validate_config
from acnet_jax.training.lock import WorkdirBusy, WorkdirLock
from acnet_jax.training.steps import TrainState
from acnet_jax.training.trainer import Trainer, count_params, create_mesh, to_host
from acnet_jax.training.write_failures import reported_as_one_paragraph

T = TypeVar('T')


class NonFiniteLoss(TrainingError):
  """The training loss became NaN or Inf; nothing after the last finite check is saved."""


def is_log_step(step: int, every: int) -> bool:
  """Every `every` steps, and at the powers of two before: the loss shows
  from the first step on, however long an interval the config asks for."""
  return step % every == 0 or (step < every and step & (step - 1) == 0)


def summarize(history: list[dict[str, jax.Array]], first_step: int) -> dict[str, float]:
  """Mean of the step metrics since the last summary; stops on a non-finite loss."""
  fetched = [to_host(m) for m in history]
  for offset, metrics in enumerate(fetched):
    if not np.isfinite(metrics['loss']):
      raise NonFiniteLoss(
        f'the training loss is {metrics["loss"]} at step {first_step + offset + 1}; stopped '
        'without saving its parameters. The newest checkpoint is from before that step: '
        'lower learning_rate, or check the data.'
      )
  return {key: float(np.mean([m[key] for m in fetched])) for key in fetched[0]}


def in_thread(work: Callable[[], T]) -> T:
  """work() in a thread the main thread waits for. XLA's compiler does not look
  at signals, a wait does: Ctrl-C while the first step (or the initial state)
  compiles stops at once, with KeyboardInterrupt and nothing saved."""
  done = threading.Event()
  result: dict[str, Any] = {}

  def run() -> None:
    try:
      result['value'] = work()
    except BaseException as error:  # Re-raised in the main thread.
      result['error'] = error
    finally:
      done.set()

  threading.Thread(target=run, name='acnet_jax-compile', daemon=True).start()
  done.wait()
  if 'error' in result:
    raise result['error']
  return result['value']


def describe_data(config: ml_collections.ConfigDict, feed: feeds.Feed) -> str:
  where = (
    'random images'
    if config.dataset == 'synthetic'
    else config.data_dir or 'the tfds default folder'
  )
  path = (
    'in memory' if isinstance(feed, feeds.MemoryFeed) else f'streamed by {feed.workers} threads'
  )
  height, width, channels = feed.image_shape
  return (
    f'data: {config.dataset} ({where}), {path}: {feed.num_train:,} training and '
    f'{feed.num_eval:,} test images of {height}x{width}x{channels}, '
    f'{config.num_classes} classes'
  )


def start_phrase(start_step: int, restored: bool) -> str:
  """Where training starts: a restored checkpoint of step 0 is weights given
  to the run (acnet_jax.convert writes one), not a fresh initialisation."""
  return f'from the checkpoint of step {start_step:,}' if restored else 'from scratch'


def describe_run(
  config: ml_collections.ConfigDict, trainer: Trainer, start: str, workdir: str
) -> str:
  """What runs, in a few lines (the full config is in workdir/config.json);
  `start` is start_phrase's."""
  return '\n'.join(
    [
      f'model: {config.model}, conv {config.conv}{" online" if config.online else ""}, '
      f'{config.dtype}, {count_params(trainer.abstract_state.params):,} parameters to train',
      describe_data(config, trainer.feed),
      f'steps: {trainer.total_steps:,} ({config.num_epochs} epochs of '
      f'{trainer.steps_per_epoch:,}, batch {config.batch_size}), {start}; '
      f'{trainer.mesh.devices.size} {jax.devices()[0].platform} devices in '
      f'{jax.process_count()} processes',
      f'workdir: {workdir} (the full config: config.json there)',
    ]
  )


def save(
  manager,
  state: TrainState,
  config: ml_collections.ConfigDict,
  trainer: Trainer,
  history: list[dict[str, jax.Array]],
  checked_step: int,
) -> None:
  """A checkpoint of `state`, once its loss history and everything it saves
  (parameters, BN statistics, optimizer state) are finite."""
  if history:
    summarize(history, checked_step)
  if not bool(to_host(trainer.all_finite((state.params, state.batch_stats, state.opt_state)))):
    raise NonFiniteLoss(
      f'the parameters, BN statistics or optimizer state of step '
      f'{int(state.step)} are not finite; stopped without saving them. The '
      'newest checkpoint is from before: lower learning_rate, or check the data.'
    )
  checkpointing.save_checkpoint(manager, state, config)


class DataFault(InputError):
  """A training batch could not be read; the checkpoint of the last step is saved."""


def refuse_changed_trajectory(config: ml_collections.ConfigDict, workdir: str, allow: bool) -> None:
  """A resume must continue the run it resumes: refuses a config whose
  trajectory keys differ from the run's config.json, unless `allow`, which
  only warns."""
  changes = trajectory_changes(runs.run_config(workdir), config)
  if not changes:
    return
  listed = '; '.join(f'{key}: {old!r} -> {new!r}' for key, (old, new) in changes.items())
  if allow:
    logging.warning('Resuming %s with a config that changes the training: %s.', workdir, listed)
    return
  raise InputError(
    f'{workdir} holds a run of another config, and resuming it would continue that run '
    f'with other settings: {listed}. Give the new config another --workdir, or rerun with '
    '--allow_config_change to resume with these values on purpose. Nothing was changed.'
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False
) -> dict[str, Any]:
  """Trains (resuming from the newest checkpoint in workdir), then evaluates the
  trained and the fused model and saves the fused deploy variables (and, with
  config.export_formats, exports the deploy model to workdir/export/).

  Holds the workdir's lock while it runs. Raises TrainingInterrupted after
  saving a checkpoint on SIGTERM/SIGINT (to any process), DataFault after
  saving one when a batch cannot be read, NonFiniteLoss (saving nothing more)
  when the loss stops being finite, WriteFailed when the workdir cannot be
  written (a full disk).
  """
  validate_config(config)
  runs.check_workdir(workdir)
  lock = WorkdirLock(workdir)
  agree_on_lock(lock)
  try:
    with reported_as_one_paragraph(workdir):
      return train_locked(config, workdir, allow_config_change)
  finally:
    lock.release()


def agree_on_lock(lock: WorkdirLock) -> None:
  """Process 0 takes the lock; with several processes all learn whether it
  could, and stop together if not."""
  refusal = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except WorkdirBusy as busy:
      refusal = busy
  if jax.process_count() > 1:
    taken = multihost_utils.broadcast_one_to_all(np.int32(refusal is None))
    if not taken and refusal is None:
      refusal = WorkdirBusy(f'{lock.workdir} is in use by another run (process 0 says so)')
  if refusal is not None:
    raise refusal


def train_locked(
  config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool
) -> dict[str, Any]:
  is_chief = jax.process_index() == 0
  trainer = Trainer(config, create_mesh())
  manager = checkpointing.checkpoint_manager(workdir, config.keep_checkpoints)
  # Every refusal before anything in the workdir changes: restoring may set
  # damaged checkpoints aside.
  if manager.all_steps() and os.path.isfile(os.path.join(workdir, runs.CONFIG_FILE)):
    refuse_changed_trajectory(config, workdir, allow_config_change)
  state, restored = in_thread(
    lambda: runs.restore_or_initialize(manager, trainer.abstract_state, trainer.init_state, config)
  )
  step = checked_step = saved_step = int(state.step)
  logging.info('%s', describe_run(config, trainer, start_phrase(step, restored), workdir))
  if is_chief:  # Only now: a refused restore leaves the workdir as it was.
    runs.write_run_config(workdir, config, trainer.feed.image_shape, trainer.feed.class_names)
  writer = metrics_lib.MetricWriter(workdir) if is_chief else None
  train_step, first_inputs = trainer.train_step, None
  if step < trainer.total_steps:
    first_inputs = trainer.train_inputs(step)
    train_step = in_thread(lambda: trainer.train_step.lower(state, first_inputs).compile())
  checked_time, checked_wait = time.perf_counter(), trainer.feed.wait_seconds
  history: list[dict[str, jax.Array]] = []
  # Counts finished steps, not dispatched ones, so that its rate is the real one.
  progress = tqdm.tqdm(
    total=trainer.total_steps, initial=step, unit='step', dynamic_ncols=True, disable=not is_chief
  )
  # A save still in flight when training stops (a signal, a NaN) is a good checkpoint.
  with stopping.stop_requests() as received, contextlib.closing(manager):
    agreement = stopping.StopAgreement(received, config.stop_agree_seconds)
    while step < trainer.total_steps:
      try:
        inputs = first_inputs if first_inputs is not None else trainer.train_inputs(step)
        first_inputs = None
      except InputError as fault:  # A file the stream cannot read: keep what is trained.
        if step > saved_step:
          save(manager, state, config, trainer, history, checked_step)
        progress.close()
        raise DataFault(
          f'{fault} Training stopped before step {step + 1}; the checkpoint of '
          f'step {step} is in {manager.directory}: repair or remove the file and '
          'run the same command again to resume there.'
        ) from fault
      state, metrics = train_step(state, inputs)
      # At most two steps in flight: this one queued, the previous one running.
      # Dispatching further ahead gains nothing on a busy device and delays a
      # stop request (and the progress shown) by every queued step.
      if history:
        jax.block_until_ready(history[-1])
        progress.update(step - progress.n)
      history.append(metrics)
      step += 1
      stop = agreement.check(step)
      is_last = step == trainer.total_steps
      if is_log_step(step, config.log_every_steps) or is_last or stop:
        summary = summarize(history, checked_step)
        progress.update(step - progress.n)
        now = time.perf_counter()
        # Wall clock, evaluations and saves included: what an epoch really costs.
        summary['steps_per_s'] = (step - checked_step) / (now - checked_time)
        # The share of the wall clock the loop waited for input batches.
        summary['data_wait_share'] = (trainer.feed.wait_seconds - checked_wait) / (
          now - checked_time
        )
        history, checked_step, checked_time = [], step, now
        checked_wait = trainer.feed.wait_seconds
        if writer:
          writer.write(step, {f'train_{k}': v for k, v in summary.items()})
        progress.set_postfix(
          loss=f'{summary["loss"]:.4f}', lr=f'{summary["lr"]:.4g}', top1=f'{summary["top1"]:.3f}'
        )
      epoch, in_epoch = divmod(step, trainer.steps_per_epoch)
      if in_epoch == 0 and epoch % config.eval_every_epochs == 0 and not is_last and not stop:
        result = trainer.evaluate(state, progress=True)
        if writer:
          writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
        progress.write(
          f'epoch {epoch}: test top1 {result["top1"]:.4f} '
          f'(fused {result["fused_top1"]:.4f}), loss {result["loss"]:.4f}'
        )
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        save(manager, state, config, trainer, history, checked_step)
        saved_step = step
      if stop:
        progress.close()
        raise stopping.TrainingInterrupted(*stop, step, str(manager.directory))
  progress.close()

  deploy_params, deploy_stats = trainer.fuse(state.params, state.batch_stats)
  result = trainer.evaluate(
    state, {'params': deploy_params, 'batch_stats': deploy_stats}, progress=True
  )
  checkpointing.save_deploy_variables(workdir, step, deploy_params, deploy_stats)
  if writer:
    writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
    writer.close()
    metrics_lib.write_eval_report(workdir, result)
  formats = artifacts.parse_formats(config.export_formats)
  if is_chief and formats:
    artifacts.write_export(
      os.path.join(workdir, artifacts.EXPORT_DIR),
      config,
      *to_host((deploy_params, deploy_stats)),
      trainer.feed.image_shape,
      step,
      result['fused_top1'],
      formats,
      trainer.feed.class_names,
    )
  return result


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates the newest intact checkpoint in workdir and writes workdir/eval.json.
  It reads the workdir without its lock: a run may be training there."""
  validate_config(config)
  manager = runs.trained_checkpoints(config, workdir)
  trainer = Trainer(config, create_mesh())
  state = runs.restore_trained(manager, trainer.abstract_state, config)
  logging.info(
    'evaluating step %d of %s, %s %s; %s',
    int(state.step),
    workdir,
    config.model,
    config.conv,
    describe_data(config, trainer.feed),
  )
  result = trainer.evaluate(state, progress=True)
  if jax.process_index() == 0:
    with reported_as_one_paragraph(workdir):
      metrics_lib.write_eval_report(workdir, result)
  return result
