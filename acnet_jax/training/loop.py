"""The two jobs of `main`: `train_and_evaluate(config, workdir)` (the training
loop) and `evaluate(config, workdir)`.

Data flow: config -> `Trainer` (feed, compiled steps) -> train steps -> Orbax
checkpoints -> evaluation of the trained model and its `fuse_params` deploy
model, side by side -> the deploy variables (and, with export_formats, the
exported deploy model).

The loop adds nothing to a step but its dispatch: at most two steps are in
flight (it waits for the one before), metrics are fetched at log steps, the
processes agree on stopping every few seconds (`stopping.StopAgreement`),
and parameters are checked for finiteness only before they are saved.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from acnet_jax.data import feeds
from acnet_jax.deploy import artifacts
from acnet_jax.errors import InputError
from acnet_jax.training import checkpointing, stopping
from acnet_jax.training import metrics as metrics_lib
from acnet_jax.training import workdir as runs
from acnet_jax.training.config import validate_config
from acnet_jax.training.steps import TrainState
from acnet_jax.training.trainer import Trainer, count_params, create_mesh, to_host


class NonFiniteLoss(InputError):
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
          'lower learning_rate, or check the data.')
  return {key: float(np.mean([m[key] for m in fetched])) for key in fetched[0]}


def compile_first_step(trainer: Trainer, state: TrainState, inputs: Any) -> Callable:
  """The train step compiled ahead of time, in a thread the main thread waits
  for: XLA's compiler does not look at signals, a wait does, so Ctrl-C while
  compiling stops at once (KeyboardInterrupt, nothing saved)."""
  done = threading.Event()
  result: dict[str, Any] = {}

  def work() -> None:
    try:
      result['compiled'] = trainer.train_step.lower(state, inputs).compile()
    except BaseException as error:  # Re-raised in the main thread.
      result['error'] = error
    finally:
      done.set()

  threading.Thread(target=work, name='compile', daemon=True).start()
  done.wait()
  if 'error' in result:
    raise result['error']
  return result['compiled']


def describe_run(config: ml_collections.ConfigDict, trainer: Trainer, start_step: int,
                 workdir: str) -> str:
  """What runs, in a few lines (the full config is in workdir/config.json)."""
  feed = trainer.feed
  data = config.data_dir if config.data_dir else 'tfds default folder'
  if config.dataset == 'synthetic':
    data = 'random images'
  path = 'in memory' if isinstance(feed, feeds.MemoryFeed) else \
      f'streamed by {feed.workers} threads'
  height, width, channels = feed.image_shape
  resume = f'resuming at step {start_step:,}' if start_step else 'from scratch'
  return '\n'.join([
      f'model: {config.model}, conv {config.conv}{" online" if config.online else ""}, '
      f'{config.dtype}, {count_params(trainer.abstract_state.params):,} parameters to train',
      f'data: {config.dataset} ({data}), {path}: {feed.num_train:,} training and '
      f'{feed.num_eval:,} test images of {height}x{width}x{channels}, '
      f'{config.num_classes} classes',
      f'steps: {trainer.total_steps:,} ({config.num_epochs} epochs of '
      f'{trainer.steps_per_epoch:,}, batch {config.batch_size}), {resume}; '
      f'{trainer.mesh.devices.size} {jax.devices()[0].platform} devices in '
      f'{jax.process_count()} processes',
      f'workdir: {workdir} (the full config: config.json there)'])


def save(manager, state: TrainState, config: ml_collections.ConfigDict, trainer: Trainer,
         history: list[dict[str, jax.Array]], checked_step: int) -> None:
  """A checkpoint of `state`, once its loss history and parameters are finite."""
  if history:
    summarize(history, checked_step)
  if not bool(to_host(trainer.all_finite(state.params))):
    raise NonFiniteLoss(f'the parameters of step {int(state.step)} are not finite; stopped '
                        'without saving them. The newest checkpoint is from before: lower '
                        'learning_rate, or check the data.')
  checkpointing.save_checkpoint(manager, state, config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from the newest checkpoint in workdir), then evaluates the
  trained and the fused model and saves the fused deploy variables (and, with
  config.export_formats, exports the deploy model to workdir/export/).

  Raises TrainingInterrupted after saving a checkpoint on SIGTERM/SIGINT (to
  any process), and NonFiniteLoss (saving nothing more) when the loss stops
  being finite.
  """
  validate_config(config)
  runs.check_workdir(workdir)
  is_chief = jax.process_index() == 0
  trainer = Trainer(config, create_mesh())
  manager = checkpointing.checkpoint_manager(workdir, config.keep_checkpoints)
  state = runs.restore_or_initialize(manager, trainer.abstract_state, trainer.init_state, config)
  step = checked_step = int(state.step)
  logging.info('%s', describe_run(config, trainer, step, workdir))
  if is_chief:  # Only now: a refused restore leaves the workdir as it was.
    runs.write_run_config(workdir, config, trainer.feed.image_shape, trainer.feed.class_names)
  writer = metrics_lib.MetricWriter(workdir) if is_chief else None
  train_step = compile_first_step(trainer, state, trainer.train_inputs(step)) \
      if step < trainer.total_steps else trainer.train_step
  checked_time, checked_wait = time.perf_counter(), trainer.feed.wait_seconds
  history: list[dict[str, jax.Array]] = []
  # Counts finished steps, not dispatched ones, so that its rate is the real one.
  progress = tqdm.tqdm(total=trainer.total_steps, initial=step, unit='step',
                       dynamic_ncols=True, disable=not is_chief)
  # A save still in flight when training stops (a signal, a NaN) is a good checkpoint.
  with stopping.stop_requests() as received, contextlib.closing(manager):
    agreement = stopping.StopAgreement(received)
    while step < trainer.total_steps:
      state, metrics = train_step(state, trainer.train_inputs(step))
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
        summary['data_wait_share'] = (trainer.feed.wait_seconds - checked_wait) / (now - checked_time)
        history, checked_step, checked_time = [], step, now
        checked_wait = trainer.feed.wait_seconds
        if writer:
          writer.write(step, {f'train_{k}': v for k, v in summary.items()})
        progress.set_postfix(loss=f"{summary['loss']:.4f}", lr=f"{summary['lr']:.4g}",
                             top1=f"{summary['top1']:.3f}")
      epoch, in_epoch = divmod(step, trainer.steps_per_epoch)
      if in_epoch == 0 and epoch % config.eval_every_epochs == 0 and not is_last and not stop:
        result = trainer.evaluate(state, progress=True)
        if writer:
          writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
        progress.write(f"epoch {epoch}: test top1 {result['top1']:.4f} "
                       f"(fused {result['fused_top1']:.4f}), loss {result['loss']:.4f}")
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        save(manager, state, config, trainer, history, checked_step)
      if stop:
        progress.close()
        raise stopping.TrainingInterrupted(*stop, step, str(manager.directory))
  progress.close()

  deploy_params, deploy_stats = trainer.fuse(state.params, state.batch_stats)
  result = trainer.evaluate(state, {'params': deploy_params, 'batch_stats': deploy_stats},
                            progress=True)
  checkpointing.save_deploy_variables(workdir, step, deploy_params, deploy_stats)
  if writer:
    writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
    writer.close()
    metrics_lib.write_eval_report(workdir, result)
  formats = artifacts.parse_formats(config.export_formats)
  if is_chief and formats:
    artifacts.write_export(os.path.join(workdir, artifacts.EXPORT_DIR), config,
                           *to_host((deploy_params, deploy_stats)), trainer.feed.image_shape,
                           step, result['fused_top1'], formats, trainer.feed.class_names)
  return result


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates the newest intact checkpoint in workdir and writes workdir/eval.json."""
  validate_config(config)
  manager = runs.trained_checkpoints(config, workdir)
  trainer = Trainer(config, create_mesh())
  state = runs.restore_trained(manager, trainer.abstract_state, config)
  result = trainer.evaluate(state, progress=True)
  if jax.process_index() == 0:
    metrics_lib.write_eval_report(workdir, result)
  return result


Runner = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]
MODES: dict[str, Runner] = {'train': train_and_evaluate, 'eval': evaluate}
