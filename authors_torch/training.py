"""Training in lockstep: the authors' PyTorch training step beside ours, from
the same weights on the same batches.

Their side is ndp_train.py with acnet/do_acnet.py's later recipe: SGD with
momentum 0.9, one parameter group each (weight decay on every parameter,
`weight_decay_bias` = weight decay; twice the rate where 'bias' is in the
name), CosineAnnealingLR over all iterations stepped after each, and
CrossEntropyLoss. Ours is the preset's optimizer and `steps.update`. Both
start from the mirror's initialisation (torch's, and the ACB BN scales at
gamma_init), carried into ours by the converter, and each step both take the
batch our feed augments.
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import jax
import ml_collections
import numpy as np
import torch
from torch import nn

from acnet_jax.interop.convert import convert_state_dict
from acnet_jax.training import steps
from acnet_jax.training.trainer import Trainer, create_mesh, create_model
from authors_torch import acnet_models, saving


def sgd_optimizer(
  model: nn.Module, base_lr: float, weight_decay: float, momentum: float
) -> torch.optim.SGD:
  """ndp_train.py's sgd_optimizer with weight_decay_bias = weight_decay, no
  no-L2 keywords matching ('depth') and no lr multipliers."""
  params = []
  for key, value in model.named_parameters():
    apply_lr = 2 * base_lr if 'bias' in key else base_lr
    params += [{'params': [value], 'lr': apply_lr, 'weight_decay': weight_decay}]
  return torch.optim.SGD(params, base_lr, momentum=momentum)


@dataclasses.dataclass(frozen=True)
class StepRecord:
  """One step of both sides: the two losses on the step's batch (before the
  update); the gradients both compute at their parameters (ours taken there
  too, so no earlier difference enters); after the update, how far apart the
  two runs' parameters are, relative to how far theirs have moved from the
  start, and their batch statistics, relative to their values. Each of the
  whole tree, |ours - theirs| / |reference| in the L2 norm: one variable whose
  gradient is a sum that nearly cancels (a BN bias) may differ far more,
  on both sides alike (see docs/authors.md)."""

  step: int
  loss_ours: float
  loss_theirs: float
  gradient_difference: float
  # Their float32 gradients' distance from the same computation in float64:
  # what rounding alone does to them on this batch, the scale to judge the
  # gradient difference by.
  gradient_rounding: float
  params_drift: float
  stats_drift: float

  @property
  def loss_difference(self) -> float:
    return abs(self.loss_ours - self.loss_theirs)


def relative_drift(ours: dict, theirs: dict, origin: dict | None = None) -> float:
  """|ours - theirs| / |theirs - origin| (origin 0 by default) of trees of one
  structure, in the L2 norm."""
  leaves = lambda tree: [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]
  ours, theirs = leaves(ours), leaves(theirs)
  origin = leaves(origin) if origin is not None else [0.0] * len(theirs)
  difference = sum(np.sum((a - b) ** 2) for a, b in zip(ours, theirs))
  return float(np.sqrt(difference / sum(np.sum((b - o) ** 2) for b, o in zip(theirs, origin))))


def lockstep(
  config: ml_collections.ConfigDict, num_steps: int, seed: int = 0, float64: bool = False
) -> list[StepRecord]:
  """`num_steps` steps of cfqkbnc (config.conv normal or acnet) on both sides.

  `float64`: both sides train in float64 (ours inside `jax.enable_x64`), so
  no ReLU input or max-pool tie can fall on different sides of zero through
  rounding, as it does now and then between two float32 computations (one
  such switch moves a whole-model gradient by ~1e-4..1e-3: docs/authors.md).
  Their float32-vs-float64 distance is then 0 and not a scale."""
  if float64:
    with jax.enable_x64(True):
      return _lockstep(config, num_steps, seed, np.float64)
  return _lockstep(config, num_steps, seed, np.float32)


def _lockstep(
  config: ml_collections.ConfigDict, num_steps: int, seed: int, dtype: type[np.floating]
) -> list[StepRecord]:
  float64 = dtype == np.float64
  trainer = Trainer(config, create_mesh())
  our_model = trainer.model
  if float64:
    our_model = create_model(ml_collections.ConfigDict({**config.to_dict(), 'dtype': 'float64'}))
  torch.manual_seed(seed)
  gamma_init = config.acb.gamma_init if config.conv == 'acnet' else None
  net = acnet_models.build(config.model, config.conv, config.num_classes, gamma_init)
  if float64:
    net = net.double()
  convert = functools.partial(convert_state_dict, model=config.model, dtype=dtype)
  start = convert(saving.numpy_state_dict(net))
  state = steps.TrainState.create(
    apply_fn=our_model.apply,
    params=start.params,
    batch_stats=start.batch_stats,
    tx=trainer.optimizer,
  )
  optimizer = sgd_optimizer(net, config.learning_rate, config.weight_decay, config.momentum)
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
    optimizer, T_max=trainer.total_steps, eta_min=0
  )
  criterion = nn.CrossEntropyLoss()
  prepare = jax.jit(trainer.feed.prepare_train)
  update = jax.jit(functools.partial(steps.update, schedule=trainer.schedule, seed=config.seed))
  gradients = jax.jit(
    lambda state, x, y: steps.gradients(state, x, y, steps.dropout_key(config.seed, state.step))[3]
  )

  def gradients_of(model: nn.Module) -> dict:
    """Their gradients, named as their parameters, through the same converter."""
    return convert(
      {
        **saving.numpy_state_dict(model),
        **{key: value.grad.numpy() for key, value in model.named_parameters()},
      }
    ).params

  net.train()
  records = []
  for step in range(num_steps):
    x, y = (np.asarray(a) for a in prepare(trainer.train_inputs(step), step))
    x = x.astype(dtype)
    state, metrics = update(state, x, y)
    at = convert(saving.numpy_state_dict(net))
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y).long()
    rounding = 0.0  # What rounding alone does to their gradients: nothing to see in float64.
    if not float64:
      exact = copy.deepcopy(net).double()  # Before their backward pass: no gradients to copy.
      criterion(exact(images.double()), labels).backward()
      exact_gradients = gradients_of(exact)
    loss = criterion(net(images), labels)
    loss.backward()
    their_gradients = gradients_of(net)
    if not float64:
      rounding = relative_drift(their_gradients, exact_gradients)
    our_gradients = gradients(state.replace(params=at.params, batch_stats=at.batch_stats), x, y)
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()
    theirs = convert(saving.numpy_state_dict(net))
    records.append(
      StepRecord(
        step + 1,
        float(metrics['loss']),
        loss.item(),
        relative_drift(our_gradients, their_gradients),
        rounding,
        relative_drift(state.params, theirs.params, start.params),
        relative_drift(state.batch_stats, theirs.batch_stats),
      )
    )
  return records
