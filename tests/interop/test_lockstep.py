"""Cifar-quick in lockstep with the authors' PyTorch training
(tests/support/authors_torch/training.py): from the same weights on the same
batches, the first steps of both sides agree within float32 rounding, so the
two compute the same updates (the later recipe's optimizer, schedule, weight
decay on every parameter and 2x rate for biases included)."""

from __future__ import annotations

import pytest

from acnet_jax.training import presets
from tests.support.authors_torch import require_torch
from tests.support.numerics import BLOCK_RTOL, MODEL_RTOL

STEPS = 3


@pytest.mark.full
@pytest.mark.parametrize('conv', ['normal', 'acnet'])
def test_the_first_steps_agree_with_the_authors_within_rounding(conv):
  require_torch()
  from tests.support.authors_torch.training import lockstep
  config = presets.preset('cfqkbnc', f'{conv}_cosine')
  config.update(dict(dataset='synthetic', synthetic_examples=1024))
  records = lockstep(config, STEPS)
  # One mean of 128 cross-entropies, at parameters equal or a rounding apart.
  for record in records:
    assert record.loss_difference <= BLOCK_RTOL * record.loss_theirs, record
  # The first step's gradients, at the same parameters, and the first update:
  # two float32 computations differ by about what rounding does to either
  # (their distance from float64: ~1e-5, more where a BN bias's gradient is a
  # sum that nearly cancels), twice that at most, plus numerics.py's model
  # bound. A wrong rate, decay mask or bias factor moves the update by >= 1e-3.
  # (Later steps can also meet a ReLU input within rounding of zero, which
  # switches one example's path on one side only: docs/authors.md.)
  first = records[0]
  assert first.gradient_difference <= 2 * first.gradient_rounding + MODEL_RTOL, first
  assert first.params_drift <= 2 * first.gradient_rounding + MODEL_RTOL, first
