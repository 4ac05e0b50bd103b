"""Cifar-quick in lockstep with the authors' PyTorch training
(authors_torch/training.py): from the same weights on the same
batches, both sides in float64, the first steps agree within float64 rounding,
so the two compute the same updates (the later recipe's optimizer, schedule,
weight decay on every parameter and 2x rate for biases included).

In float32 the two sides can disagree by 1e-4..1e-3 in a step's gradients
when one ReLU input lies within rounding of zero and falls on different sides
(docs/authors.md): float64 leaves no such input at these scales."""

from __future__ import annotations

import pytest

from acnet_jax.training import presets
from tests.support.numerics import MODEL_RTOL
from tests.support.torch_extra import require_torch

STEPS = 3
# numerics.py's whole-model float32 bound, scaled by float64's unit roundoff
# over float32's (2**-53 / 2**-24): ~2e-13. Measured: <= 5.2e-14. A wrong
# rate, decay mask or bias factor moves the update by >= 1e-3.
FLOAT64_MODEL_RTOL = MODEL_RTOL * 2.0**-29


@pytest.mark.full
@pytest.mark.needs_torch
@pytest.mark.parametrize('conv', ['normal', 'acnet'])
def test_the_first_steps_agree_with_the_authors_within_float64_rounding(conv):
  require_torch()
  from authors_torch.training import lockstep

  config = presets.preset('cfqkbnc', f'{conv}_cosine')
  config.update(dict(dataset='synthetic', synthetic_examples=1024))
  for record in lockstep(config, STEPS, float64=True):
    # One mean of 128 cross-entropies; the gradients at their parameters;
    # after the update, how far apart the two runs' parameters are.
    assert record.loss_difference <= FLOAT64_MODEL_RTOL * record.loss_theirs, record
    assert record.gradient_difference <= FLOAT64_MODEL_RTOL, record
    assert record.params_drift <= FLOAT64_MODEL_RTOL, record
