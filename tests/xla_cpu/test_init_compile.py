"""The init compiled at optimisation level 0 on the CPU draws the weights the
default compilation draws; other platforms get no option."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax import models
from acnet_jax.data import keys
from acnet_jax.xla_cpu import dispatch, init_compile


@pytest.mark.full  # Two compilations of a model's init, one of them optimised: 20 s.
def test_the_unoptimised_init_draws_the_default_compilations_weights():
  model = models.create_model('cfqkbnc', 'acnet', num_classes=10)
  init = lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False)
  weights = [
    jax.device_get(jax.jit(init, compiler_options=options)(keys.seed_key(0)))
    for options in ({}, init_compile.INIT_COMPILER_OPTIONS)
  ]
  leaves = [jax.tree.leaves(tree) for tree in weights]
  assert len(leaves[0]) == len(leaves[1]) > 20
  for default, unoptimised in zip(*leaves):
    # Bit for bit on the CPUs tried; another CPU's code may round a normal draw otherwise.
    np.testing.assert_array_max_ulp(unoptimised, default, maxulp=1)


def test_only_the_cpu_gets_the_init_options(monkeypatch):
  assert dispatch.init_compiler_options() == init_compile.INIT_COMPILER_OPTIONS
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert dispatch.init_compiler_options() == {}
