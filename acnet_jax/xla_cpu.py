"""The XLA:CPU flags this project sets for itself: convolutions on Eigen.

jaxlib 0.10 hands XLA:CPU's convolutions to YNNPACK by default; on the 2-core
Xeon these numbers come from, Eigen's convolutions made every measured step
faster (docs/performance.md: Cifar-quick's train step 326 -> 219 ms, ResNet-56's
2142 -> 1650 ms, its eval 2854 -> 1949 ms). The values are the same computation
rounded otherwise: in float64 both the authors' code and ours agree to 5e-14 under
it (tests/interop/test_lockstep.py). The flag names only the CPU backend, so GPUs
and TPUs are untouched, and a user's own setting of it in XLA_FLAGS wins.

XLA reads XLA_FLAGS when JAX first starts a backend: importing acnet_jax before
any computation (as its commands do) is what makes this take effect.
"""

from __future__ import annotations

from collections.abc import MutableMapping

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
# An empty fusion type routes no op to YNNPACK.
PROJECT_FLAGS = (f'{YNN_FUSION_FLAG}=',)


def with_project_flags(environ: MutableMapping[str, str]) -> None:
  """Appends each project flag to environ['XLA_FLAGS'] unless it is set there."""
  user_flags = environ.get('XLA_FLAGS', '')
  missing = [flag for flag in PROJECT_FLAGS if flag.split('=')[0] not in user_flags]
  if missing:
    environ['XLA_FLAGS'] = ' '.join([user_flags, *missing]).strip()
