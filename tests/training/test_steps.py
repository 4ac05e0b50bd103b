"""The pure steps: one update computes what the model, the loss and torch's
SGD say; the two ACB computations and bfloat16 take the same step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from acnet_jax.training import steps
from acnet_jax.training.trainer import Trainer, create_mesh, to_host
from tests.support.runs import flat, tiny_config

# Two computations of the same step sum the same terms in another order. float32
# rounds each operation by at most u = 2**-24 ~ 6e-8; an order change in a sum
# of n terms moves it by about sqrt(n) u of the terms' magnitude (rounding
# errors add as a random walk), and the longest sums here are the weight-gradient
# convolutions over 16 images x 32 x 32 pixels: sqrt(16384) u ~ 8e-6. The
# BatchNorm backward pass subtracts nearly equal sums (the gradient minus its
# batch mean), which can cost another factor of ten relative to the result:
# 1e-4 bounds both, and a real difference (a wrong padding, a missing branch)
# is of order 1.
RTOL_REORDERED_SUMS = 1e-4


def first_step_gradients(config) -> dict[str, np.ndarray]:
  """Loss, gradients and new batch statistics of the first step, by path."""
  trainer = Trainer(config, create_mesh())
  x, y = jax.jit(trainer.feed.prepare_train)(trainer.train_inputs(0), 0)
  replicated = jax.tree.map(lambda _: trainer.replicated, (0, 0, 0, 0))
  loss, _, batch_stats, grads = jax.jit(steps.gradients, out_shardings=replicated)(
    trainer.init_state(), x, y, steps.dropout_key(config.seed, 0)
  )
  loss, grads, batch_stats = to_host((loss, grads, batch_stats))
  return {
    'loss': loss,
    **{f'grad{k}': v for k, v in flat(grads).items()},
    **{f'stats{k}': v for k, v in flat(batch_stats).items()},
  }


def assert_same_step(actual: dict, expected: dict) -> None:
  """Every leaf within RTOL_REORDERED_SUMS of its own largest magnitude."""
  assert actual.keys() == expected.keys()
  for key, value in expected.items():
    scale = max(float(np.max(np.abs(value))), 1e-30)
    error = float(np.max(np.abs(actual[key] - value))) / scale
    assert error <= RTOL_REORDERED_SUMS, f'{key}: relative difference {error:.3g}'


def test_one_step_is_the_loss_of_the_model_and_an_sgd_update():
  config = tiny_config(conv='acnet', weight_decay=0.0, momentum=0.0)
  trainer = Trainer(config, create_mesh())
  initial = trainer.init_state()
  before = jax.device_get(initial)
  inputs = trainer.train_inputs(0)
  x, y = jax.jit(trainer.feed.prepare_train)(inputs, 0)
  state, metrics = trainer.train_step(initial, inputs)
  metrics = jax.device_get(metrics)

  # The loss and top-1 of this batch, computed here from the model itself.
  logits, updates = jax.jit(
    lambda v, x: trainer.model.apply(v, x, train=True, mutable=['batch_stats'])
  )({'params': before.params, 'batch_stats': before.batch_stats}, x)
  expected_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  assert metrics['loss'] == pytest.approx(float(expected_loss), rel=1e-5)
  assert metrics['top1'] == pytest.approx(float(jnp.mean(jnp.argmax(logits, -1) == y)))
  assert metrics['lr'] == pytest.approx(0.1) and int(state.step) == 1
  # Plain SGD (no momentum, no decay): new = old - lr * gradient, the gradient
  # computed here again (the same sums in another order: equal to rounding), and
  # the subtraction rounded to float32 once more (u = 2**-24 of the parameter).
  grads = jax.jit(
    jax.grad(
      lambda p: optax.softmax_cross_entropy_with_integer_labels(
        trainer.model.apply(
          {'params': p, 'batch_stats': before.batch_stats}, x, train=True, mutable=['batch_stats']
        )[0],
        y,
      ).mean()
    )
  )(before.params)
  old, new, grad = flat(before.params), flat(state.params), flat(grads)
  for key in old:
    step = 0.1 * grad[key]
    bound = RTOL_REORDERED_SUMS * np.abs(step).max() + 2**-23 * np.abs(old[key])
    assert np.all(np.abs(new[key] - (old[key] - step)) <= bound), key
  for key, value in flat(updates['batch_stats']).items():
    np.testing.assert_allclose(flat(state.batch_stats)[key], value, rtol=1e-5, err_msg=key)


@pytest.mark.full  # 18 s; the stacked block itself is in tests/blocks/test_acb.py.
def test_stacked_acb_computes_the_same_step_as_one_conv_per_branch():
  """The ACB impl changes the computation, not the training."""
  config = tiny_config(conv='acnet', augment=False)
  branches = first_step_gradients(config)
  config.acb.impl = 'stacked'
  assert_same_step(first_step_gradients(config), branches)


@pytest.mark.full  # 20 s; test_platforms lowers every online kind's step in the fast tier.
def test_an_online_step_trains_every_branch_kernel_and_scale():
  """The online DBB's kernel is built from its branches inside the step: every
  branch conv (the identity-based 1x1 included, zero at init), every scale and
  the one BN receive a gradient and move (no weight decay: only a gradient moves them)."""
  config = tiny_config(conv='dbb', online=True, augment=False, weight_decay=0.0)
  trainer = Trainer(config, create_mesh())
  initial = jax.device_get(trainer.init_state())
  state, metrics = trainer.train_step(trainer.init_state(), trainer.train_inputs(0))
  assert np.isfinite(float(metrics['loss']))
  before, after = flat(initial.params), flat(jax.device_get(state.params))
  assert {key for key in before if "['stage1_block1']['conv1']" in key} == {
    f"['stage1_block1']['conv1']{leaf}"
    for leaf in (
      "['origin']['kernel']",
      "['1x1']['kernel']",
      "['avg_conv']['kernel']",
      "['1x1_kxk_idconv1']['kernel']",
      "['1x1_kxk_conv2']['kernel']",
      "['origin_scale']",
      "['1x1_scale']",
      "['avg_scale']",
      "['1x1_kxk_scale']",
      "['bn']['scale']",
      "['bn']['bias']",
    )
  }
  for key, value in before.items():
    assert np.any(after[key] != value), key


@pytest.mark.full  # 20 s; bfloat16 numerics are also in tests/models/test_imagenet.py.
def test_a_bfloat16_step_keeps_float32_state_and_the_float32_loss():
  """Convs and matmuls in bfloat16 (8 significant bits: each rounding is off by
  up to 2**-9 ~ 2e-3 relative); parameters, BN statistics, optimizer state
  and the loss stay float32. The first loss, on the same batch and initial
  parameters, is a sum of many such roundings that mostly cancel: a 2% bound
  holds with room, and a wrong cast (an int, a lost BN) is off by far more."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config(conv='acnet', augment=False, dtype=dtype)
    trainer = Trainer(config, create_mesh())
    state, metrics = trainer.train_step(trainer.init_state(), trainer.train_inputs(0))
    losses[dtype] = float(metrics['loss'])
    leaves = jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
    assert {leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
      jnp.dtype('float32')
    }
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=2e-2)


def test_dropout_keys_are_a_function_of_seed_and_step():
  key = lambda seed, step: jax.random.key_data(steps.dropout_key(seed, step))
  np.testing.assert_array_equal(key(0, 3), key(0, 3))
  assert not np.array_equal(key(0, 3), key(0, 4))
  assert not np.array_equal(key(0, 3), key(1, 3))


def key_types(jaxpr: jax.extend.core.Jaxpr) -> set[str]:
  """The dtypes ('key<fry>', 'key<rbg>', ...) of every key a jaxpr and the
  jaxprs inside it (jit, scan, cond, custom rules) hold."""
  found = set()
  for eqn in jaxpr.eqns:
    for var in [*eqn.invars, *eqn.outvars]:
      if jax.dtypes.issubdtype(var.aval.dtype, jax.dtypes.prng_key):
        found.add(str(var.aval.dtype))
    for param in eqn.params.values():
      for inner in param if isinstance(param, (tuple, list)) else [param]:
        if isinstance(inner, jax.extend.core.ClosedJaxpr):
          inner = inner.jaxpr
        if isinstance(inner, jax.extend.core.Jaxpr):
          found |= key_types(inner)
  return found


def test_every_draw_of_a_run_comes_from_a_threefry_key():
  # Init, the augmentation and the dropout of a step: threefry's bits are the
  # same on every platform, RBG's are not.
  config = tiny_config(conv='acnet', augment=True)
  trainer = Trainer(config, create_mesh())
  init = jax.make_jaxpr(
    lambda: steps.create_train_state(
      config, trainer.model, trainer.optimizer, trainer.feed.image_shape
    )
  )().jaxpr
  step = trainer.train_step.trace(trainer.abstract_state, trainer.train_inputs(0)).jaxpr.jaxpr
  assert key_types(init) == key_types(step) == {'key<fry>'}
