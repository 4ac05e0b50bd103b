"""The optimizer as torch.optim.SGD runs it: schedules, weight-decay masks and
the learning-rate group of the biases."""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import optax

from acnet_jax.errors import InputError

LR_SCHEDULES = ('piecewise', 'cosine')


def create_lr_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Step-wise schedule; warmup multiplies it (torch's WarmupMultiStepLR), so
  milestones stay at their absolute epochs."""
  total_steps = config.num_epochs * steps_per_epoch
  rate = base_learning_rate(config)
  if config.lr_schedule == 'piecewise':
    boundaries = {
      int(e * steps_per_epoch): config.lr_decay_factor for e in config.lr_boundaries_epochs
    }
    main = optax.piecewise_constant_schedule(rate, boundaries)
  elif config.lr_schedule == 'cosine':
    main = optax.cosine_decay_schedule(rate, total_steps, alpha=0.0)
  else:
    raise InputError(
      f'unknown lr_schedule {config.lr_schedule!r}; valid: {", ".join(LR_SCHEDULES)}'
    )
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  if not warmup_steps:
    return main
  ramp = optax.linear_schedule(config.warmup_factor, 1.0, warmup_steps)
  return lambda step: main(step) * ramp(step)


def base_learning_rate(config: ml_collections.ConfigDict) -> float:
  """learning_rate, scaled linearly with the batch when reference_batch_size > 0."""
  if not config.reference_batch_size:
    return config.learning_rate
  return config.learning_rate * config.batch_size / config.reference_batch_size


def weight_decay_mask(params: Any, on_bn_and_bias: bool) -> Any:
  """True where L2 applies: conv and dense kernels, or everything."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: on_bn_and_bias or path[-1].key == 'kernel', params
  )


def bias_labels(params: Any) -> Any:
  """'bias' for every parameter named bias (BN beta, conv and dense biases)."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: 'bias' if path[-1].key == 'bias' else 'other', params
  )


def create_optimizer(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
  """torch.optim.SGD with two parameter groups: the decay is added to the
  gradient before momentum, and biases run at bias_lr_factor times the rate."""
  sgd = lambda rate: optax.sgd(rate, momentum=config.momentum)
  return optax.chain(
    optax.add_decayed_weights(
      config.weight_decay,
      functools.partial(weight_decay_mask, on_bn_and_bias=config.weight_decay_on_bn_and_bias),
    ),
    optax.multi_transform(
      {'bias': sgd(lambda step: config.bias_lr_factor * schedule(step)), 'other': sgd(schedule)},
      bias_labels,
    ),
  )
