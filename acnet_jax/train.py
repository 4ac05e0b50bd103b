"""Training and evaluation: `train_and_evaluate(config, workdir)` is the whole job.

Data flow: config -> `load_dataset` (uint8 arrays, replicated on the mesh)
-> `train_step` (jit; batch indices sharded on 'data'; the batch is gathered,
augmented and normalised on device) -> Orbax checkpoints -> `evaluate`
(trained model and its `fuse_params` deploy model, side by side).

Everything that varies from step to step (data order, augmentation) is a pure
function of (seed, step), so a checkpoint of the train state is all a resume
needs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
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

from acnet_jax import input_pipeline, models
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.layers import ACB_IMPLS, validate_branches

DATA_AXIS = 'data'
# Fused and trained logits differ only by float rounding; anything larger is a bug.
FUSION_TOLERANCE = 1e-3


class TrainState(train_state.TrainState):
  batch_stats: Any


# ----------------------------------------------------------------- building

LR_SCHEDULES = ('piecewise', 'cosine')
TRAINABLE_CONVS = ('normal', 'acnet')
POSITIVE_KEYS = ('batch_size', 'eval_batch_size', 'num_epochs', 'log_every_steps',
                 'eval_every_epochs', 'checkpoint_every_steps', 'keep_checkpoints')


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops on a bad value before anything is loaded or written."""
  choices = {'model': (config.model, sorted(models.MODELS)),
             'conv': (config.conv, TRAINABLE_CONVS),
             'dataset': (config.dataset, input_pipeline.DATASETS),
             'lr_schedule': (config.lr_schedule, LR_SCHEDULES),
             'acb.impl': (config.acb.impl, ACB_IMPLS)}
  for key, (value, valid) in choices.items():
    if value not in valid:
      raise InputError(f'unknown {key} {value!r}; valid: {", ".join(valid)}')
  for key in POSITIVE_KEYS:
    if not config[key] > 0:
      raise InputError(f'{key} must be positive; got {config[key]!r}')
  validate_branches(config.acb.branches)


def create_model(config: ml_collections.ConfigDict, conv: str | None = None) -> nn.Module:
  return models.create_model(
      config.model, conv or config.conv, config.num_classes,
      gamma_init=config.acb.gamma_init, use_affine=config.acb.use_affine,
      branches=tuple(config.acb.branches), acb_impl=config.acb.impl)


def create_lr_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Step-wise schedule; warmup multiplies it (torch's WarmupMultiStepLR), so
  milestones stay at their absolute epochs."""
  total_steps = config.num_epochs * steps_per_epoch
  if config.lr_schedule == 'piecewise':
    boundaries = {int(e * steps_per_epoch): config.lr_decay_factor
                  for e in config.lr_boundaries_epochs}
    main = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  elif config.lr_schedule == 'cosine':
    main = optax.cosine_decay_schedule(config.learning_rate, total_steps, alpha=0.0)
  else:
    raise InputError(f'unknown lr_schedule {config.lr_schedule!r}; valid: {", ".join(LR_SCHEDULES)}')
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  if not warmup_steps:
    return main
  ramp = optax.linear_schedule(config.warmup_factor, 1.0, warmup_steps)
  return lambda step: main(step) * ramp(step)


def weight_decay_mask(params: Any, on_bn_and_bias: bool) -> Any:
  """True where L2 applies: conv and dense kernels, or everything."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: on_bn_and_bias or path[-1].key == 'kernel', params)


def bias_labels(params: Any) -> Any:
  """'bias' for every parameter named bias (BN beta, conv and dense biases)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: 'bias' if path[-1].key == 'bias' else 'other', params)


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule) -> optax.GradientTransformation:
  """torch.optim.SGD with two parameter groups: the decay is added to the
  gradient before momentum, and biases run at bias_lr_factor times the rate."""
  sgd = lambda rate: optax.sgd(rate, momentum=config.momentum)
  return optax.chain(
      optax.add_decayed_weights(
          config.weight_decay,
          functools.partial(weight_decay_mask, on_bn_and_bias=config.weight_decay_on_bn_and_bias)),
      optax.multi_transform(
          {'bias': sgd(lambda step: config.bias_lr_factor * schedule(step)), 'other': sgd(schedule)},
          bias_labels))


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

def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def prepare_batch(images: jax.Array, labels: jax.Array, indices: jax.Array, step: jax.Array,
                  *, seed: int, augment: bool,
                  batch_sharding: NamedSharding) -> tuple[jax.Array, jax.Array]:
  """The input pipeline, on device: gather the batch from the uint8 split,
  augment it (a pure function of seed and step) and normalise it."""
  x = images[indices]
  if augment:
    x = input_pipeline.augment(x, jax.random.fold_in(jax.random.key(seed), step))
  x = jax.lax.with_sharding_constraint(input_pipeline.normalize(x), batch_sharding)
  return x, labels[indices]


def update(state: TrainState, x: jax.Array, y: jax.Array,
           *, schedule: optax.Schedule) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a ready batch."""
  def loss_fn(params):
    logits, updates = state.apply_fn({'params': params, 'batch_stats': state.batch_stats}, x,
                                     train=True, mutable=['batch_stats'])
    return cross_entropy(logits, y).mean(), (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  # A finite loss can still leave Inf parameters behind; never checkpoint those.
  finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state.params)]))
  metrics = {'loss': loss, 'top1': jnp.mean(jnp.argmax(logits, -1) == y),
             'lr': schedule(state.step - 1), 'finite': finite.astype(jnp.float32)}
  return state, metrics


def train_step(state: TrainState, images: jax.Array, labels: jax.Array, indices: jax.Array,
               *, schedule: optax.Schedule, seed: int, augment: bool,
               batch_sharding: NamedSharding) -> tuple[TrainState, dict[str, jax.Array]]:
  x, y = prepare_batch(images, labels, indices, state.step, seed=seed, augment=augment,
                       batch_sharding=batch_sharding)
  return update(state, x, y, schedule=schedule)


def eval_step(trained: nn.Module, deploy: nn.Module, variables: dict, deploy_variables: dict,
              images: jax.Array, labels: jax.Array, indices: jax.Array,
              mask: jax.Array) -> dict[str, jax.Array]:
  """Sums over the unmasked examples, for the trained and the deploy model."""
  x, y = input_pipeline.normalize(images[indices]), labels[indices]
  sums = {'num_examples': mask.sum()}
  outputs = {}
  for prefix, model, v in [('', trained, variables), ('fused_', deploy, deploy_variables)]:
    logits = model.apply(v, x, train=False)
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
  """The compiled steps and the data of one run on one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset,
               mesh: Mesh):
    self.config = config
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    num_devices = mesh.devices.size
    for name in ('batch_size', 'eval_batch_size'):
      if config[name] % num_devices:
        raise InputError(f'{name}={config[name]} is not divisible by the {num_devices} devices')
    self.steps_per_epoch = len(dataset.train) // config.batch_size
    if self.steps_per_epoch == 0:
      raise InputError(f'batch_size={config.batch_size} is larger than the '
                       f'{len(dataset.train)} training examples')
    self.total_steps = config.num_epochs * self.steps_per_epoch
    self.num_train = len(dataset.train)
    self.num_test = len(dataset.test)
    self.train_data = self.replicate((dataset.train.images, dataset.train.labels))
    self.test_data = self.replicate((dataset.test.images, dataset.test.labels))

    self.model = create_model(config)
    self.deploy_model = create_model(config, 'deploy')
    self.schedule = create_lr_schedule(config, self.steps_per_epoch)
    state = create_train_state(config, self.model, create_optimizer(config, self.schedule),
                               dataset.train.images.shape[1:])
    state_sharding = jax.tree.map(lambda _: self.replicated, state)
    self.initial_state = self.replicate(state)

    self.train_step = jax.jit(
        functools.partial(train_step, schedule=self.schedule, seed=config.seed,
                          augment=config.augment, batch_sharding=self.batch_sharding),
        out_shardings=(state_sharding, self.replicated), donate_argnums=0)
    self.eval_step = jax.jit(functools.partial(eval_step, self.model, self.deploy_model),
                             out_shardings=self.replicated)
    # Jitted: op by op, fusing DenseNet-40 compiles for 20 s on the CPU.
    self.fuse = jax.jit(fuse_params)

  def replicate(self, tree: Any) -> Any:
    """Host values, the same in every process -> arrays replicated on the mesh."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        self.replicated, np.asarray(x)), tree)

  def shard_batch(self, global_batch: np.ndarray) -> jax.Array:
    """A global batch, known to every process -> an array sharded on 'data'
    from each process's own share of it."""
    share = len(global_batch) // jax.process_count()
    start = jax.process_index() * share
    return jax.make_array_from_process_local_data(
        self.batch_sharding, global_batch[start:start + share], global_batch.shape)

  def batch_indices(self, step: int) -> jax.Array:
    return self.shard_batch(input_pipeline.train_batch_indices(
        self.config.seed, step, self.steps_per_epoch, self.config.batch_size, self.num_train))

  def evaluate(self, state: TrainState) -> dict[str, float]:
    """Test-split metrics of the trained model and of its fused deploy model."""
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    deploy_params, deploy_stats = self.fuse(state.params, state.batch_stats)
    deploy_variables = {'params': deploy_params, 'batch_stats': deploy_stats}
    totals: dict[str, float] = {}
    for indices, mask in input_pipeline.eval_batches(self.num_test, self.config.eval_batch_size):
      sums = self.eval_step(variables, deploy_variables, *self.test_data,
                            self.shard_batch(indices), self.shard_batch(mask))
      for key, value in to_host(sums).items():
        totals[key] = max(totals.get(key, 0.0), float(value)) if key == 'fused_max_rel_diff' \
            else totals.get(key, 0.0) + float(value)
    n = totals['num_examples']
    result = {'step': int(state.step), 'num_examples': int(n)}
    for prefix in ('', 'fused_'):
      for name in ('top1', 'top5', 'loss'):
        result[f'{prefix}{name}'] = totals[f'{prefix}{name}'] / n
    result['fused_max_rel_diff'] = totals['fused_max_rel_diff']
    result['fused_matches'] = result['fused_max_rel_diff'] <= FUSION_TOLERANCE
    if not result['fused_matches']:
      logging.error('FUSED MODEL DOES NOT MATCH THE TRAINED MODEL: logits differ by %.3g '
                    '(relative) > %g. The deploy model is wrong; please report this.',
                    result['fused_max_rel_diff'], FUSION_TOLERANCE)
    return result


def create_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def load_dataset(config: ml_collections.ConfigDict) -> input_pipeline.Dataset:
  return input_pipeline.load_dataset(
      config.dataset, config.data_dir or None, config.num_classes, config.seed,
      config.max_train_examples, config.synthetic_examples)


def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                           # Leftovers of a save killed midway.
                                           cleanup_tmp_directories=True))


def save_checkpoint(manager: ocp.CheckpointManager, state: TrainState,
                    config: ml_collections.ConfigDict) -> None:
  manager.save(int(state.step), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict())))


def restore_checkpoint(manager: ocp.CheckpointManager, trainer: Trainer) -> TrainState | None:
  """The newest train state in the manager's directory, or None if it has none."""
  step = manager.latest_step()
  if step is None:
    return None
  saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))['config']
  for key in ('model', 'conv', 'num_classes'):
    if saved.get(key) != trainer.config[key]:
      raise InputError(
          f'the checkpoint of step {step} in {manager.directory} is of {key}={saved.get(key)!r} '
          f'but this config has {key}={trainer.config[key]!r}: use another workdir or config')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, trainer.initial_state)
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  logging.info('Restored the checkpoint of step %d.', step)
  return state['state']


class MetricWriter:
  """Metrics as JSON lines (metrics.jsonl) and TensorBoard events, in workdir."""

  def __init__(self, workdir: str):
    import tensorflow as tf  # Only for the event files.
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self._summary = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))
    self._tf = tf

  def write(self, step: int, metrics: dict[str, float]) -> None:
    self._jsonl.write(json.dumps({'step': step, **metrics}) + '\n')
    self._jsonl.flush()
    with self._summary.as_default(step=step):
      for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tf.summary.scalar(name, value)
    self._summary.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._summary.close()


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT stopped training; a checkpoint of the current step is saved."""

  def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
    super().__init__(f'Stopped by {signal_name} at step {step}; the checkpoint of that step is '
                     f'in {checkpoint_dir}. Run the same command again to resume.')
    self.signal_number = signal.Signals[signal_name].value


class NonFiniteLoss(InputError):
  """The training loss became NaN or Inf; nothing after the last finite check is saved."""


@contextlib.contextmanager
def stop_requests() -> Iterator[list[str]]:
  """Turns SIGTERM and SIGINT into a request to stop at the next step boundary.

  Yields the list of signal names received so far.
  """
  received: list[str] = []
  handler = lambda signum, frame: received.append(signal.Signals(signum).name)
  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from the newest checkpoint in workdir), then evaluates the
  trained and the fused model and saves the fused deploy variables.

  Raises TrainingInterrupted after saving a checkpoint on SIGTERM/SIGINT, and
  NonFiniteLoss (saving nothing more) when the loss stops being finite.
  """
  validate_config(config)
  is_chief = jax.process_index() == 0
  mesh = create_mesh()
  trainer = Trainer(config, load_dataset(config), mesh)
  logging.info('Config:\n%s', config)
  logging.info('%d devices (%s) in %d processes; %s %s: %d parameters; %d steps of %d '
               'examples, %d per epoch.', mesh.devices.size, jax.devices()[0].platform,
               jax.process_count(), config.model, config.conv,
               count_params(trainer.initial_state.params), trainer.total_steps, config.batch_size,
               trainer.steps_per_epoch)

  manager = checkpoint_manager(workdir, config)
  state = restore_checkpoint(manager, trainer) or trainer.initial_state
  if is_chief:  # Only now: a refused restore leaves the workdir as it was.
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json(indent=2))
  writer = MetricWriter(workdir) if is_chief else None
  step = checked_step = int(state.step)
  checked_time = time.perf_counter()
  history: list[dict[str, jax.Array]] = []
  progress = tqdm.tqdm(total=trainer.total_steps, initial=step, unit='step',
                       dynamic_ncols=True, disable=not is_chief)
  # A save still in flight when training stops (a signal, a NaN) is a good checkpoint.
  with stop_requests() as received, contextlib.closing(manager):
    while step < trainer.total_steps:
      state, metrics = trainer.train_step(state, *trainer.train_data, trainer.batch_indices(step))
      history.append(metrics)
      step += 1
      progress.update(1)
      is_last = step == trainer.total_steps
      save = step % config.checkpoint_every_steps == 0 or is_last or received
      if step % config.log_every_steps == 0 or save:
        summary = summarize(history, checked_step)
        now = time.perf_counter()
        # Wall clock, evaluations and saves included: what an epoch really costs.
        summary['steps_per_s'] = (step - checked_step) / (now - checked_time)
        history, checked_step, checked_time = [], step, now
        if writer:
          writer.write(step, {f'train_{k}': v for k, v in summary.items()})
        progress.set_postfix(loss=f"{summary['loss']:.4f}", lr=f"{summary['lr']:.4g}",
                             top1=f"{summary['top1']:.3f}")
      epoch, in_epoch = divmod(step, trainer.steps_per_epoch)
      if in_epoch == 0 and epoch % config.eval_every_epochs == 0 and not is_last:
        result = trainer.evaluate(state)
        if writer:
          writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
        progress.write(f"epoch {epoch}: test top1 {result['top1']:.4f} "
                       f"(fused {result['fused_top1']:.4f}), loss {result['loss']:.4f}")
      if save:
        save_checkpoint(manager, state, config)
      if received:
        progress.close()
        raise TrainingInterrupted(received[0], step, str(manager.directory))
  progress.close()

  result = trainer.evaluate(state)
  save_deploy_variables(workdir, state, trainer)
  if writer:
    writer.write(step, {f'test_{k}': v for k, v in result.items() if k != 'step'})
    writer.close()
    write_eval_report(workdir, result)
  return result


def save_deploy_variables(workdir: str, state: TrainState, trainer: Trainer) -> None:
  params, batch_stats = trainer.fuse(state.params, state.batch_stats)
  path = os.path.join(os.path.abspath(workdir), 'deploy', str(int(state.step)))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, {'params': params, 'batch_stats': batch_stats}, force=True)
  checkpointer.wait_until_finished()
  logging.info('Saved the fused deploy variables to %s', path)


def write_eval_report(workdir: str, result: dict[str, Any]) -> None:
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  logging.info('Trained: top1 %.4f top5 %.4f loss %.4f | fused deploy: top1 %.4f top5 %.4f '
               'loss %.4f | %d test examples, step %d', result['top1'], result['top5'],
               result['loss'], result['fused_top1'], result['fused_top5'], result['fused_loss'],
               result['num_examples'], result['step'])


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Restores the newest checkpoint in workdir and writes workdir/eval.json."""
  validate_config(config)
  directory = os.path.join(workdir, 'checkpoints')
  manager = checkpoint_manager(workdir, config) if os.path.isdir(directory) else None
  if manager is None or manager.latest_step() is None:
    raise InputError(f'no checkpoint in {directory}: train first (--mode=train) or point '
                     '--workdir at a trained run')
  trainer = Trainer(config, load_dataset(config), create_mesh())
  result = trainer.evaluate(restore_checkpoint(manager, trainer))
  if jax.process_index() == 0:
    write_eval_report(workdir, result)
  return result


Runner = Callable[[ml_collections.ConfigDict, str], dict[str, float]]
MODES: dict[str, Runner] = {'train': train_and_evaluate, 'eval': evaluate}
