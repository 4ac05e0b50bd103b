"""The profile's classification of a compiled program's ops, on programs whose
ops are known, and the loop-overhead arithmetic."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from acnet_jax.benchmarking import profile
from acnet_jax.benchmarking.loop_overhead import loop_rate
from acnet_jax.xla_cpu import dispatch, pooling

BATCH = 8


def conv(x, w):
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def kinds_of(f, *args) -> set[str]:
  return set(profile.classify(jax.jit(f).lower(*args).compile().as_text(), BATCH).values())


X = jnp.ones((BATCH, 16, 16, 4))
W = jnp.ones((3, 3, 4, 8))


def test_a_conv_and_its_gradients_are_told_apart():
  loss = lambda x, w: jnp.sum(conv(x, w) ** 2)
  assert 'conv forward' in kinds_of(loss, X, W)
  assert 'conv weight gradient' in kinds_of(jax.grad(loss, 1), X, W)
  assert 'conv input gradient' in kinds_of(jax.grad(loss, 0), X, W)
  assert 'conv weight gradient' not in kinds_of(jax.grad(loss, 0), X, W)


def test_pooling_matmuls_and_reductions_are_told_apart():
  assert 'pooling forward' in kinds_of(
    lambda x: pooling.plain_max_pool(x, (3, 3), (2, 2), 'VALID'), X
  )
  xla_grad = jax.grad(lambda x: jnp.sum(pooling.plain_max_pool(x, (3, 3), (2, 2), 'VALID') ** 2))
  assert 'pooling gradient' in kinds_of(xla_grad, X)
  ours = jax.grad(lambda x: jnp.sum(dispatch.max_pool(x, (3, 3), (2, 2)) ** 2))
  assert 'pooling gradient' in kinds_of(ours, X)
  assert 'matmul' in kinds_of(lambda a: a @ a, jnp.ones((64, 64)))
  assert 'reductions (BN statistics, loss)' in kinds_of(lambda x: jnp.mean(x, (0, 1, 2)), X)
  # A large batch's statistics: XLA sums parts of the batch by reduce-windows.
  large = jax.ShapeDtypeStruct((128, 32, 32, 32), jnp.float32)
  large_kinds = kinds_of(lambda x: jnp.mean(x, (0, 1, 2)), large)
  assert 'reductions (BN statistics, loss)' in large_kinds
  assert 'pooling forward' not in large_kinds


def test_a_profile_attributes_the_traced_time_to_every_kind():
  loss = jax.jit(jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), 1))
  compiled = loss.lower(X, W).compile()
  per_kind = profile.profile(compiled, lambda: compiled(X, W), 3, BATCH)
  assert set(per_kind) == set(profile.KINDS)
  assert per_kind['conv weight gradient'] + per_kind[profile.UNTRACED] > 0
  table = profile.format_profile({'grad': per_kind})
  assert table.splitlines()[0].split() == ['op', 'kind', 'grad']
  assert len(table.splitlines()) == len(profile.KINDS) + 2


def test_the_loop_rate_skips_the_first_intervals(tmp_path):
  lines = [
    {'step': 1, 'train_steps_per_s': 0.1},
    {'step': 100, 'train_steps_per_s': 5.0},
    {'step': 200, 'train_steps_per_s': 9.0},
    {'step': 300, 'train_steps_per_s': 10.0},
    {'step': 400, 'train_steps_per_s': 12.0},
    {'step': 400, 'test_top1': 0.5},
  ]
  path = tmp_path / 'metrics.jsonl'
  path.write_text('\n'.join(json.dumps(line) for line in lines))
  assert loop_rate(str(path), skip_steps=200) == pytest.approx(11.0)  # Median of 10 and 12.
