"""Training and evaluation: `train_and_evaluate(config, workdir)` is the whole job.

Data flow: config -> `feeds.create_feed` (splits on the mesh, or a stream of
host batches) -> `train_step` (jit; batch sharded on 'data') -> Orbax
checkpoints -> `evaluate` (trained model and its `fuse_params` deploy model,
side by side).

Everything that varies from step to step (data order, augmentation, dropout)
is a pure function of (seed, step), so a checkpoint of the train state is all
a resume needs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from acnet_jax import artifacts, checkpointing, feeds, input_pipeline, models, optim, stopping
from acnet_jax import metrics as metrics_lib
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.layers import ACB_IMPLS, DTYPES, TRAINABLE_KINDS, validate_branches

DATA_AXIS = 'data'
# Folded into a step's key for dropout, so that it differs from the augmentation's.
DROPOUT_STREAM = 1
# Fused and trained logits differ only by float rounding; anything larger is a
# bug. bfloat16 rounds each op to 2**-9 relative (float32: 2**-24), and the
# differences compound over the layers.
FUSION_TOLERANCE = {'float32': 1e-3, 'bfloat16': 5e-2}


class TrainState(train_state.TrainState):
  batch_stats: Any


# ----------------------------------------------------------------- building

POSITIVE_KEYS = ('batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
                 'eval_every_epochs', 'checkpoint_every_steps', 'keep_checkpoints')


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops on a bad value before anything is loaded or written."""
  choices = {'model': (config.model, sorted(models.MODELS)),
             'conv': (config.conv, TRAINABLE_KINDS),
             'lr_schedule': (config.lr_schedule, optim.LR_SCHEDULES),
             'acb.impl': (config.acb.impl, ACB_IMPLS),
             'pipeline': (config.pipeline, feeds.PIPELINES),
             'dtype': (config.dtype, DTYPES)}
  for key, (value, valid) in choices.items():
    if value not in valid:
      raise InputError(f'unknown {key} {value!r}; valid: {", ".join(valid)}')
  feeds.validate_dataset(config)
  artifacts.parse_formats(config.export_formats)
  for key in POSITIVE_KEYS:
    if not config[key] > 0:
      raise InputError(f'{key} must be positive; got {config[key]!r}')
  validate_branches(config.acb.branches)


def create_model(config: ml_collections.ConfigDict, conv: str | None = None) -> nn.Module:
  return models.create_model(
      config.model, conv or config.conv, config.num_classes,
      gamma_init=config.acb.gamma_init, use_affine=config.acb.use_affine,
      branches=tuple(config.acb.branches), acb_impl=config.acb.impl,
      branch_bn=config.acb.branch_bn, dtype=config.dtype)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       optimizer: optax.GradientTransformation, image_shape: tuple[int, ...]) -> TrainState:
  # Jitted, with the 'rbg' generator: eager init compiles every op one by one,
  # and XLA compiles a threefry draw per parameter slowly (rc20 ACNet on the
  # CPU: 20 s with threefry, 8 s with rbg). Same seed, same init.
  init = jax.jit(lambda key: model.init(key, jnp.zeros((1, *image_shape)), train=False))
  variables = init(jax.random.key(config.seed, impl='rbg'))
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           batch_stats=variables['batch_stats'], tx=optimizer)


def count_params(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


# -------------------------------------------------------------------- steps

def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per example, in float32 whatever the compute dtype."""
  logits = logits.astype(jnp.float32)
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def gradients(state: TrainState, x: jax.Array, y: jax.Array, dropout_key: jax.Array,
              label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array, Any, Any]:
  """(loss, logits, the batch statistics after this batch, gradients) of a
  train-mode pass at the state's parameters."""
  def loss_fn(params):
    logits, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats}, x,
                                     train=True, mutable=['batch_stats'],
                                     rngs={'dropout': dropout_key})
    loss = cross_entropy(logits, y, label_smoothing).mean()
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return loss, logits, batch_stats, grads


def dropout_key(seed: int, step: jax.Array) -> jax.Array:
  """A pure function of (seed, step), apart from the augmentation's key."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), DROPOUT_STREAM)


def update(state: TrainState, x: jax.Array, y: jax.Array, *, schedule: optax.Schedule,
           seed: int, label_smoothing: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a ready batch."""
  loss, logits, batch_stats, grads = gradients(state, x, y, dropout_key(seed, state.step),
                                               label_smoothing)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  # A finite loss can still leave Inf parameters behind; never checkpoint those.
  finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state.params)]))
  metrics = {'loss': loss, 'top1': jnp.mean(jnp.argmax(logits, -1) == y),
             'lr': schedule(state.step - 1), 'finite': finite.astype(jnp.float32)}
  return state, metrics


def train_step(state: TrainState, inputs: feeds.Inputs, *, feed: feeds.Feed,
               schedule: optax.Schedule, seed: int,
               label_smoothing: float) -> tuple[TrainState, dict[str, jax.Array]]:
  x, y = feed.prepare_train(inputs, state.step)
  return update(state, x, y, schedule=schedule, seed=seed, label_smoothing=label_smoothing)


def eval_step(trained: nn.Module, deploy: nn.Module, feed: feeds.Feed, variables: dict,
              deploy_variables: dict, inputs: feeds.Inputs,
              mask: jax.Array) -> dict[str, jax.Array]:
  """Sums over the unmasked examples, for the trained and the deploy model."""
  x, y = feed.prepare_eval(inputs)
  sums = {'num_examples': mask.sum()}
  outputs = {}
  for prefix, model, v in [('', trained, variables), ('fused_', deploy, deploy_variables)]:
    logits = model.apply(v, x, train=False).astype(jnp.float32)
    top5 = jax.lax.top_k(logits, 5)[1]
    sums[f'{prefix}loss'] = jnp.sum(cross_entropy(logits, y) * mask)
    sums[f'{prefix}top1'] = jnp.sum((top5[:, 0] == y) * mask)
    sums[f'{prefix}top5'] = jnp.sum(jnp.any(top5 == y[:, None], -1) * mask)
    outputs[prefix] = logits
  scale = jnp.maximum(jnp.max(jnp.abs(outputs[''])), 1e-12)
  sums['fused_max_rel_diff'] = jnp.max(jnp.abs(outputs[''] - outputs['fused_']) * mask[:, None]) / scale
  return sums


# ------------------------------------------------------------------ the job

class Trainer:
  """The compiled steps and the input feed of one run on one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh,
               dataset: input_pipeline.Dataset | None = None):
    """`dataset`: splits to hold in memory; by default the config's data set,
    held or streamed as `feeds.create_feed` decides."""
    self.config = config
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    num_devices = mesh.devices.size
    for name in ('batch_size', 'eval_batch_size'):
      if config[name] % num_devices:
        raise InputError(f'{name}={config[name]} is not divisible by the {num_devices} devices')
    sharder = feeds.Sharder(self.replicated, self.batch_sharding)
    self.feed = feeds.MemoryFeed(dataset, config, sharder) if dataset is not None \
        else feeds.create_feed(config, sharder)
    self.steps_per_epoch = self.feed.num_train // config.batch_size
    if self.steps_per_epoch == 0:
      raise InputError(f'batch_size={config.batch_size} is larger than the '
                       f'{self.feed.num_train} training examples')
    self.total_steps = config.num_epochs * self.steps_per_epoch

    self.model = create_model(config)
    self.deploy_model = create_model(config, 'deploy')
    self.schedule = optim.create_lr_schedule(config, self.steps_per_epoch)
    state = create_train_state(config, self.model, optim.create_optimizer(config, self.schedule),
                               self.feed.image_shape)
    state_sharding = jax.tree.map(lambda _: self.replicated, state)
    self.initial_state = sharder.replicate(state)

    self.train_step = jax.jit(
        functools.partial(train_step, feed=self.feed, schedule=self.schedule, seed=config.seed,
                          label_smoothing=config.label_smoothing),
        out_shardings=(state_sharding, self.replicated), donate_argnums=0)
    self.eval_step = jax.jit(functools.partial(eval_step, self.model, self.deploy_model, self.feed),
                             out_shardings=self.replicated)
    # Jitted: op by op, fusing DenseNet-40 compiles for 20 s on the CPU.
    self.fuse = jax.jit(fuse_params)

  def train_inputs(self, step: int) -> feeds.Inputs:
    return self.feed.train_inputs(step, self.steps_per_epoch)

  def evaluate(self, state: TrainState) -> dict[str, float]:
    """Test-split metrics of the trained model and of its fused deploy model."""
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    deploy_params, deploy_stats = self.fuse(state.params, state.batch_stats)
    deploy_variables = {'params': deploy_params, 'batch_stats': deploy_stats}
    totals: dict[str, float] = {}
    for inputs, mask in self.feed.eval_inputs():
      sums = self.eval_step(variables, deploy_variables, inputs, mask)
      for key, value in to_host(sums).items():
        totals[key] = max(totals.get(key, 0.0), float(value)) if key == 'fused_max_rel_diff' \
            else totals.get(key, 0.0) + float(value)
    n = totals['num_examples']
    result = {'step': int(state.step), 'num_examples': int(n)}
    for prefix in ('', 'fused_'):
      for name in ('top1', 'top5', 'loss'):
        result[f'{prefix}{name}'] = totals[f'{prefix}{name}'] / n
    result['fused_max_rel_diff'] = totals['fused_max_rel_diff']
    tolerance = FUSION_TOLERANCE[self.config.dtype]
    result['fused_matches'] = result['fused_max_rel_diff'] <= tolerance
    if not result['fused_matches']:
      logging.error('FUSED MODEL DOES NOT MATCH THE TRAINED MODEL: logits differ by %.3g '
                    '(relative) > %g. Either the eval-mode activations overflow %s (a deep '
                    'model a few steps into training at a high rate: its BN running '
                    'statistics lag far behind; a later checkpoint tells) or the deploy model '
                    'is wrong: then please report this.',
                    result['fused_max_rel_diff'], tolerance, self.config.dtype)
    return result


def create_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


class NonFiniteLoss(InputError):
  """The training loss became NaN or Inf; nothing after the last finite check is saved."""


def to_host(tree: Any) -> Any:
  """Replicated device arrays -> numpy, also when other processes hold copies."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def summarize(history: list[dict[str, jax.Array]], first_step: int) -> dict[str, float]:
  """Mean of the step metrics since the last summary; stops on a non-finite loss."""
  fetched = [to_host(m) for m in history]
  for offset, metrics in enumerate(fetched):
    if not (np.isfinite(metrics['loss']) and metrics['finite']):
      raise NonFiniteLoss(
          f'the training loss is {metrics["loss"]} at step {first_step + offset + 1}'
          f'{"" if metrics["finite"] else " and the parameters it produced are not finite"}; '
          'stopped without saving them. The newest checkpoint is from before that step: '
          'lower learning_rate, or check the data.')
  return {key: float(np.mean([m[key] for m in fetched])) for key in fetched[0] if key != 'finite'}


def check_workdir(workdir: str) -> None:
  """Stops before any work if checkpoints could not be written there."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise InputError(f'--workdir {workdir} is a file, not a folder: name a folder (new or a '
                     'previous run of this config)')
  parent = os.path.dirname(os.path.abspath(workdir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise InputError(f'--workdir {workdir} cannot be created: {parent} is not a writable folder')


def restore_or_initialize(manager: ocp.CheckpointManager, trainer: Trainer) -> TrainState:
  """The newest intact checkpoint (damaged newer ones set aside), or the initial state."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, trainer.initial_state)
  state, damaged = checkpointing.restore_newest(manager, abstract, trainer.config)
  checkpointing.set_aside(manager, damaged)
  return trainer.initial_state if state is None else state


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from the newest checkpoint in workdir), then evaluates the
  trained and the fused model and saves the fused deploy variables (and, with
  config.export_formats, exports the deploy model to workdir/export/).

  Raises TrainingInterrupted after saving a checkpoint on SIGTERM/SIGINT (to
  any process), and NonFiniteLoss (saving nothing more) when the loss stops
  being finite.
  """
  validate_config(config)
  check_workdir(workdir)
  is_chief = jax.process_index() == 0
  mesh = create_mesh()
  trainer = Trainer(config, mesh)
  logging.info('Config:\n%s', config)
  logging.info('%d devices (%s) in %d processes; %s %s: %d parameters; %d steps of %d '
               'examples, %d per epoch.', mesh.devices.size, jax.devices()[0].platform,
               jax.process_count(), config.model, config.conv,
               count_params(trainer.initial_state.params), trainer.total_steps, config.batch_size,
               trainer.steps_per_epoch)

  manager = checkpointing.checkpoint_manager(workdir, config.keep_checkpoints)
  state = restore_or_initialize(manager, trainer)
  if is_chief:  # Only now: a refused restore leaves the workdir as it was.
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))
  writer = metrics_lib.MetricWriter(workdir) if is_chief else None
  step = checked_step = int(state.step)
  checked_time, checked_wait = time.perf_counter(), trainer.feed.wait_seconds
  history: list[dict[str, jax.Array]] = []
  # Counts finished steps, not dispatched ones, so that its rate is the real one.
  progress = tqdm.tqdm(total=trainer.total_steps, initial=step, unit='step',
                       dynamic_ncols=True, disable=not is_chief)
  # A save still in flight when training stops (a signal, a NaN) is a good checkpoint.
  with stopping.stop_requests() as received, contextlib.closing(manager):
    while step < trainer.total_steps:
      state, metrics = trainer.train_step(state, trainer.train_inputs(step))
      # At most two steps in flight: this one queued, the previous one running.
      # Dispatching further ahead gains nothing on a busy device and delays a
      # stop request (and the progress shown) by every queued step.
      if history:
        jax.block_until_ready(history[-1])
        progress.update(step - progress.n)
      history.append(metrics)
      step += 1
      stop = stopping.agreed_stop(received)
      is_last = step == trainer.total_steps
      save = step % config.checkpoint_every_steps == 0 or is_last or stop
      if step % config.log_every_steps == 0 or save:
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
        result = trainer.evaluate(state)
        if writer:
          writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
        progress.write(f"epoch {epoch}: test top1 {result['top1']:.4f} "
                       f"(fused {result['fused_top1']:.4f}), loss {result['loss']:.4f}")
      if save:
        checkpointing.save_checkpoint(manager, state, config)
      if stop:
        progress.close()
        raise stopping.TrainingInterrupted(*stop, step, str(manager.directory))
  progress.close()

  result = trainer.evaluate(state)
  deploy_params, deploy_stats = trainer.fuse(state.params, state.batch_stats)
  checkpointing.save_deploy_variables(workdir, step, deploy_params, deploy_stats)
  if writer:
    writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
    writer.close()
    metrics_lib.write_eval_report(workdir, result)
  formats = artifacts.parse_formats(config.export_formats)
  if is_chief and formats:
    artifacts.write_export(os.path.join(workdir, artifacts.EXPORT_DIR), config,
                           *to_host((deploy_params, deploy_stats)), trainer.feed.image_shape,
                           step, result['fused_top1'], formats)
  return result


def trained_checkpoints(config: ml_collections.ConfigDict, workdir: str) -> ocp.CheckpointManager:
  """The checkpoints of a trained run; InputError if workdir holds none."""
  directory = os.path.join(workdir, 'checkpoints')
  manager = checkpointing.checkpoint_manager(workdir, config.keep_checkpoints) \
      if os.path.isdir(directory) else None
  if manager is None or not manager.all_steps():
    raise InputError(f'no checkpoint in {directory}: train first (--mode=train) or point '
                     '--workdir at a trained run')
  return manager


def restore_trained(manager: ocp.CheckpointManager, trainer: Trainer) -> TrainState:
  """The newest intact checkpoint (damaged newer ones are skipped, not moved)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, trainer.initial_state)
  with contextlib.closing(manager):
    state, _ = checkpointing.restore_newest(manager, abstract, trainer.config)
  return state


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Evaluates the newest intact checkpoint in workdir and writes workdir/eval.json."""
  validate_config(config)
  manager = trained_checkpoints(config, workdir)
  trainer = Trainer(config, create_mesh())
  result = trainer.evaluate(restore_trained(manager, trainer))
  if jax.process_index() == 0:
    metrics_lib.write_eval_report(workdir, result)
  return result


Runner = Callable[[ml_collections.ConfigDict, str], dict[str, float]]
MODES: dict[str, Runner] = {'train': train_and_evaluate, 'eval': evaluate}
