"""Schedules and the optimizer, as torch runs them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from acnet_jax.training import optim, presets
from tests.support.runs import flat, tiny_config


def test_piecewise_schedule_with_flat_warmup_keeps_absolute_milestones():
  config = presets.preset('rc56', 'acnet_lrs1')
  schedule = optim.create_lr_schedule(config, steps_per_epoch=10)
  # warmup_factor=1: the original's warmup does not ramp.
  assert [float(schedule(s)) for s in (0, 49, 999, 1000, 1999, 2000, 4000)] == pytest.approx(
    [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.00001]
  )


def test_warmup_ramp_and_cosine():
  config = tiny_config(warmup_epochs=1, warmup_factor=0.1, lr_boundaries_epochs=(5,))
  schedule = optim.create_lr_schedule(config, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(5)) == pytest.approx(0.055)
  assert float(schedule(10)) == pytest.approx(0.1)
  cosine = optim.create_lr_schedule(tiny_config(lr_schedule='cosine', learning_rate=0.2), 10)
  assert [float(cosine(s)) for s in (0, 10, 20)] == pytest.approx([0.2, 0.1, 0.0], abs=1e-7)
  with pytest.raises(ValueError, match='valid: piecewise, cosine'):
    optim.create_lr_schedule(tiny_config(lr_schedule='linear'), 10)


@pytest.mark.parametrize('on_bn_and_bias,bias_lr_factor', [(False, 1.0), (True, 2.0)])
def test_optimizer_is_torch_sgd_with_l2_in_the_gradient(on_bn_and_bias, bias_lr_factor):
  config = tiny_config(
    weight_decay=0.01,
    momentum=0.9,
    weight_decay_on_bn_and_bias=on_bn_and_bias,
    bias_lr_factor=bias_lr_factor,
  )
  optimizer = optim.create_optimizer(config, optax.constant_schedule(0.5))
  params = {
    'conv': {'kernel': jnp.array([1.0, -2.0])},
    'bn': {'scale': jnp.array([3.0]), 'bias': jnp.array([4.0])},
  }
  grads = jax.tree.map(jnp.ones_like, params)
  opt_state = optimizer.init(params)
  expected, buf = params, None
  for _ in range(2):
    # torch.optim.SGD: d = g + wd * p; buf = momentum * buf + d; p -= lr * buf,
    # with lr * bias_lr_factor in the group of the biases.
    decayed = {
      m: {
        k: grads[m][k] + (0.01 * expected[m][k] if (k == 'kernel' or on_bn_and_bias) else 0.0)
        for k in params[m]
      }
      for m in params
    }
    buf = decayed if buf is None else jax.tree.map(lambda b, d: 0.9 * b + d, buf, decayed)
    expected = {
      m: {
        k: expected[m][k] - 0.5 * (bias_lr_factor if k == 'bias' else 1.0) * buf[m][k]
        for k in params[m]
      }
      for m in params
    }
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  for key, value in flat(expected).items():
    np.testing.assert_allclose(flat(params)[key], value, rtol=1e-6)
