"""Test tiers (README, Tests): the default run is the fast tier; `-m full` runs
what needs subprocesses, several processes, the notebook or real data; `-m
slow` the minutes-long compilations. Shared here: the compilation cache and
the one tiny finished run that tests only read."""

import importlib.util
import os
import tempfile

import pytest

# The full tier runs TensorFlow (SavedModel export) and torch (the authors'
# models) in one worker. Importing triton, which torch's optimizers load,
# after TensorFlow segfaults the process; the other order works.
if importlib.util.find_spec('triton') is not None:
  import triton  # noqa: F401

# A skip fails under CI=true (tests/support/ci_skips.py); pytester tests that hook.
pytest_plugins = ['tests.support.ci_skips', 'pytester']

# Tests compile the same small models many times, in this process and in
# subprocesses: a persistent compilation cache shared by all of them saves minutes.
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR', os.path.join(tempfile.gettempdir(), 'acnet_jax_test_jax_cache')
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

from acnet_jax import xla_cpu  # noqa: E402

# The tests compute under the flags the commands set (before any test starts
# a backend; subprocesses inherit them).
xla_cpu.use_project_flags()

from acnet_jax.training.loop import train_and_evaluate  # noqa: E402  (after the cache settings)
from tests.support.runs import tiny_config  # noqa: E402

# The tiny finished run: rc8 ACNet, 4 steps, checkpoints at 2 and 4, exported
# as jax.export at the end.
TINY_RUN = dict(conv='acnet', num_epochs=1, checkpoint_every_steps=2, export_formats='stablehlo')
TINY_RUN_STEPS = 4


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """The workdir of the tiny run, finished; tests must not change it (copy it first)."""
  workdir = tmp_path_factory.mktemp('tiny_run')
  train_and_evaluate(tiny_config(**TINY_RUN), str(workdir))
  return workdir
