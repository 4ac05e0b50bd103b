"""The pure steps a run compiles: one SGD update on a batch, and the sums of
one evaluation batch for the trained model and its fused deploy model.

Everything that varies from step to step (data order, augmentation, dropout)
is a pure function of (seed, step), so a checkpoint of the train state is all
a resume needs.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from acnet_jax.data import feeds, keys

# Folded into a step's key for dropout, so that it differs from the augmentation's.
DROPOUT_STREAM = 1


class TrainState(train_state.TrainState):
  batch_stats: Any


def create_train_state(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  image_shape: tuple[int, ...],
  compiler_options: dict[str, Any] | None = None,
) -> TrainState:
  """`compiler_options` for the jitted init, where it is not traced inside
  another function (dispatch.init_compiler_options())."""
  # Jitted: eager init compiles every op one by one. The threefry key costs
  # compile time (docs/training.md, Seeds) but means the same weights on every platform.
  init = jax.jit(
    lambda key: model.init(key, jnp.zeros((1, *image_shape)), train=False),
    compiler_options=compiler_options,
  )
  variables = init(keys.seed_key(config.seed))
  return TrainState.create(
    apply_fn=model.apply,
    params=variables['params'],
    batch_stats=variables['batch_stats'],
    tx=optimizer,
  )


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per example, in float32 (float64 for float64 logits) whatever the compute dtype."""
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def gradients(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  dropout_key: jax.Array,
  label_smoothing: float = 0.0,
) -> tuple[jax.Array, jax.Array, Any, Any]:
  """(loss, logits, the batch statistics after this batch, gradients) of a
  train-mode pass at the state's parameters."""

  def loss_fn(params):
    logits, updates = state.apply_fn(
      {'params': params, 'batch_stats': state.batch_stats},
      x,
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': dropout_key},
    )
    loss = cross_entropy(logits, y, label_smoothing).mean()
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  return loss, logits, batch_stats, grads


def dropout_key(seed: int, step: jax.Array) -> jax.Array:
  """A pure function of (seed, step), apart from the augmentation's key."""
  return jax.random.fold_in(jax.random.fold_in(keys.seed_key(seed), step), DROPOUT_STREAM)


def update(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  *,
  schedule: optax.Schedule,
  seed: int,
  label_smoothing: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a ready batch."""
  loss, logits, batch_stats, grads = gradients(
    state, x, y, dropout_key(seed, state.step), label_smoothing
  )
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, step_metrics(loss, logits, y, schedule(state.step - 1))


def step_metrics(
  loss: jax.Array, logits: jax.Array, labels: jax.Array, lr: jax.Array
) -> dict[str, jax.Array]:
  """What a train step reports: its loss, its top-1 on the batch, the rate it stepped at."""
  return {'loss': loss, 'top1': jnp.mean(jnp.argmax(logits, -1) == labels), 'lr': lr}


def all_finite(tree: Any) -> jax.Array:
  """Whether every value is finite: a finite loss can still leave Inf parameters
  behind, and those must never be checkpointed."""
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train_step(
  state: TrainState,
  inputs: feeds.Inputs,
  *,
  feed: feeds.Feed,
  schedule: optax.Schedule,
  seed: int,
  label_smoothing: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
  x, y = feed.prepare_train(inputs, state.step)
  return update(state, x, y, schedule=schedule, seed=seed, label_smoothing=label_smoothing)


def top_k_name(num_classes: int) -> str:
  """'top5', or top-k with k the number of classes where there are fewer than 5."""
  return f'top{min(5, num_classes)}'


def eval_step(
  trained: nn.Module,
  deploy: nn.Module,
  feed: feeds.Feed,
  totals: dict,
  variables: dict,
  deploy_variables: dict,
  inputs: feeds.Inputs,
  mask: jax.Array,
) -> dict[str, jax.Array]:
  """`totals` plus this batch's sums over the unmasked examples, for the
  trained and the deploy model (and the largest relative difference of their
  logits so far): evaluation accumulates on the device."""
  x, y = feed.prepare_eval(inputs)
  sums = {'num_examples': mask.sum()}
  outputs = {}
  for prefix, model, v in [('', trained, variables), ('fused_', deploy, deploy_variables)]:
    logits = model.apply(v, x, train=False).astype(jnp.float32)
    k = min(5, logits.shape[-1])
    top_k = jax.lax.top_k(logits, k)[1]
    sums[f'{prefix}loss'] = jnp.sum(cross_entropy(logits, y) * mask)
    sums[f'{prefix}top1'] = jnp.sum((top_k[:, 0] == y) * mask)
    sums[f'{prefix}top{k}'] = jnp.sum(jnp.any(top_k == y[:, None], -1) * mask)
    outputs[prefix] = logits
  scale = jnp.maximum(jnp.max(jnp.abs(outputs[''])), 1e-12)
  difference = jnp.max(jnp.abs(outputs[''] - outputs['fused_']) * mask[:, None]) / scale
  added = {key: totals[key] + value for key, value in sums.items()}
  return {**added, 'fused_max_rel_diff': jnp.maximum(totals['fused_max_rel_diff'], difference)}


def zero_totals(num_classes: int) -> dict[str, jax.Array]:
  """What `eval_step` accumulates, before the first batch."""
  names = ['num_examples', 'fused_max_rel_diff'] + [
    f'{prefix}{name}'
    for prefix in ('', 'fused_')
    for name in dict.fromkeys(('loss', 'top1', top_k_name(num_classes)))
  ]
  return {name: jnp.zeros((), jnp.float32) for name in names}
