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
  # The first update, from the same parameters: two float32 computations of
  # one model's gradients (numerics.py), and the optimizer applied to them. A
  # wrong rate, decay or bias factor is off by order 1 of the update; later
  # steps start a rounding apart, which a BN bias's cancelling sum can amplify.
  first = records[0]
  assert first.gradient_difference <= MODEL_RTOL and first.params_drift <= MODEL_RTOL, first
