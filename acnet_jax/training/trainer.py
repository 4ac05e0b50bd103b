"""What one run compiles on one mesh: the model and its deploy form, the input
feed, the schedule and optimizer, and the jitted train, eval and fuse steps."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from acnet_jax import models
from acnet_jax.blocks.acb import ACBOptions
from acnet_jax.blocks.repvgg import RepVGGOptions
from acnet_jax.data import feeds
from acnet_jax.errors import InputError
from acnet_jax.fusion import fuse_params
from acnet_jax.training import optim, steps
from acnet_jax.xla_cpu import dispatch

DATA_AXIS = 'data'
# Fused and trained logits differ only by float rounding; anything larger is a
# bug. bfloat16 rounds each op to 2**-9 relative (float32: 2**-24), and the
# differences compound over the layers.
FUSION_TOLERANCE = {'float32': 1e-3, 'bfloat16': 5e-2}


def create_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def create_model(config: ml_collections.ConfigDict, conv: str | None = None) -> nn.Module:
  return models.create_model(
    config.model,
    conv or config.conv,
    config.num_classes,
    acb=ACBOptions(**config.acb.to_dict()),
    repvgg=RepVGGOptions(**config.repvgg.to_dict()),
    online=config.online,
    dtype=config.dtype,
  )


def abstract_train_state(
  config: ml_collections.ConfigDict, image_shape: tuple[int, ...]
) -> steps.TrainState:
  """Shapes and dtypes of a run's train state, to restore into; nothing is
  computed. The schedule does not shape the optimizer state, so any will do."""
  optimizer = optim.create_optimizer(config, optim.create_lr_schedule(config, steps_per_epoch=1))
  model = create_model(config)
  return jax.eval_shape(lambda: steps.create_train_state(config, model, optimizer, image_shape))


def count_params(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


def to_host(tree: Any) -> Any:
  """Replicated device arrays -> numpy, also when other processes hold copies."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def check_batch_sizes(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Every device gets the same share of every global batch."""
  for name in ('batch_size', 'eval_batch_size'):
    if config[name] % num_devices:
      raise InputError(f'{name}={config[name]} is not divisible by the {num_devices} devices')


class Trainer:
  """The compiled steps and the input feed of one run on one mesh.

  The train state is known by its shapes (`abstract_state`) without
  computing anything; `init_state()` computes the initial one, which a run
  that restores a checkpoint never needs.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh):
    self.config = config
    self.mesh = mesh
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    check_batch_sizes(config, mesh.devices.size)
    self.sharder = feeds.Sharder(self.replicated, self.batch_sharding)
    self.feed = feeds.create_feed(config, self.sharder)
    self.steps_per_epoch = self.feed.num_train // config.batch_size
    if self.steps_per_epoch == 0:
      raise InputError(
        f'batch_size={config.batch_size} is larger than the {self.feed.num_train} training examples'
      )
    self.total_steps = config.num_epochs * self.steps_per_epoch

    self.model = create_model(config)
    self.deploy_model = create_model(config, 'deploy')
    self.schedule = optim.create_lr_schedule(config, self.steps_per_epoch)
    self.optimizer = optim.create_optimizer(config, self.schedule)
    # Replicated: what a restore reads into, on every device of the mesh.
    self.abstract_state = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=self.replicated),
      jax.eval_shape(self._create_state),
    )
    state_sharding = jax.tree.map(lambda _: self.replicated, self.abstract_state)

    self.train_step = jax.jit(
      functools.partial(
        steps.train_step,
        feed=self.feed,
        schedule=self.schedule,
        seed=config.seed,
        label_smoothing=config.label_smoothing,
      ),
      out_shardings=(state_sharding, self.replicated),
      donate_argnums=0,
    )
    self.eval_step = jax.jit(
      functools.partial(steps.eval_step, self.model, self.deploy_model, self.feed),
      out_shardings=self.replicated,
      donate_argnums=0,
    )
    # Jitted: op by op, fusing DenseNet-40 compiles for 20 s on the CPU.
    self.fuse = jax.jit(fuse_params)
    self.all_finite = jax.jit(steps.all_finite, out_shardings=self.replicated)

  def _create_state(self, compiler_options: dict[str, Any] | None = None) -> steps.TrainState:
    return steps.create_train_state(
      self.config, self.model, self.optimizer, self.feed.image_shape, compiler_options
    )

  def init_state(self) -> steps.TrainState:
    """The initial train state, replicated on the mesh; on the CPU the init
    compiles unoptimised, to the same weights (xla_cpu/init_compile.py)."""
    return self.sharder.replicate(self._create_state(dispatch.init_compiler_options()))

  def train_inputs(self, step: int) -> feeds.Inputs:
    return self.feed.train_inputs(step, self.steps_per_epoch)

  def num_eval_batches(self) -> int:
    return -(-self.feed.num_eval // self.config.eval_batch_size)

  def evaluate(
    self, state: steps.TrainState, deploy_variables: dict | None = None, progress: bool = False
  ) -> dict[str, Any]:
    """Test-split metrics of the trained model and of its fused deploy model
    (`deploy_variables`, fused here if not given). The sums stay on the
    device until the last batch; `progress` shows a bar of the batches."""
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    if deploy_variables is None:
      deploy_variables = dict(
        zip(('params', 'batch_stats'), self.fuse(state.params, state.batch_stats))
      )
    totals = self.sharder.replicate(steps.zero_totals(self.config.num_classes))
    batches = self.feed.eval_inputs()
    if progress and jax.process_index() == 0:
      batches = tqdm.tqdm(
        batches,
        total=self.num_eval_batches(),
        desc='evaluating',
        unit='batch',
        leave=False,
        dynamic_ncols=True,
      )
    for inputs, mask in batches:
      totals = self.eval_step(totals, variables, deploy_variables, inputs, mask)
    return eval_report(to_host(totals), int(state.step), self.config)


def eval_report(
  totals: dict[str, Any], step: int, config: ml_collections.ConfigDict
) -> dict[str, Any]:
  """eval.json: means over the test examples of the trained and the fused
  model, and whether their logits agree within the dtype's tolerance."""
  n = float(totals['num_examples'])
  result: dict[str, Any] = {'step': step, 'num_examples': int(n)}
  names = dict.fromkeys(('top1', steps.top_k_name(config.num_classes), 'loss'))
  for prefix in ('', 'fused_'):
    for name in names:
      result[f'{prefix}{name}'] = float(totals[f'{prefix}{name}']) / n
  result['fused_max_rel_diff'] = float(totals['fused_max_rel_diff'])
  tolerance = FUSION_TOLERANCE[config.dtype]
  result['fused_matches'] = result['fused_max_rel_diff'] <= tolerance
  if not result['fused_matches']:
    logging.error(
      'FUSED MODEL DOES NOT MATCH THE TRAINED MODEL: logits differ by %.3g '
      '(relative) > %g. Either the eval-mode activations overflow %s (a deep '
      'model a few steps into training at a high rate: its BN running '
      'statistics lag far behind; a later checkpoint tells) or the deploy model '
      'is wrong: then please report this.',
      result['fused_max_rel_diff'],
      tolerance,
      config.dtype,
    )
  return result
