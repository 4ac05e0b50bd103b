"""The key of a run's random draws: threefry, whose bits are the same on every
platform, so `--config.seed=S` gives the same initial weights, augmentation and
dropout on a CPU, a GPU or a TPU (RBG's bits depend on the platform's XLA).

jax.random.key's default is threefry too, but a process may change it
(`jax_default_prng_impl`, e.g. to 'rbg' for speed); naming it keeps a run's
draws from depending on that setting.
"""

from __future__ import annotations

import jax

IMPL = 'threefry2x32'


def seed_key(seed: int) -> jax.Array:
  """The root key of every draw of a run with this seed."""
  return jax.random.key(seed, impl=IMPL)
