"""The XLA:CPU flags this project runs under: convolutions on Eigen.

jaxlib 0.10 hands XLA:CPU's convolutions to YNNPACK by default; on the 2-core
Xeon these numbers come from, Eigen's convolutions made every measured step
faster (docs/performance.md: Cifar-quick's train step 326 -> 219 ms, ResNet-56's
2142 -> 1650 ms, its eval 2854 -> 1949 ms). The values are the same computation
rounded otherwise: in float64 both the authors' code and ours agree to 5e-14 under
it (tests/interop/test_lockstep.py). The flag names only the CPU backend, so GPUs
and TPUs are untouched, and a user's own setting of it in XLA_FLAGS wins.

XLA reads XLA_FLAGS once, when JAX starts its first backend, so the flags must
be in the environment before any computation: the commands call
`use_project_flags()` first thing, and a notebook calls it in its first cell.
Importing acnet_jax sets nothing. This module imports no JAX.
"""

from __future__ import annotations

import os
import shlex
import sys
import warnings

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
# An empty fusion type routes no op to YNNPACK.
PROJECT_FLAGS = (f'{YNN_FUSION_FLAG}=',)


def flag_names(xla_flags: str) -> frozenset[str]:
  """The names set in an XLA_FLAGS value: '--a=1 --b' -> {'--a', '--b'}."""
  return frozenset(word.split('=')[0] for word in shlex.split(xla_flags))


def missing_project_flags(xla_flags: str) -> tuple[str, ...]:
  """The project flags whose names an XLA_FLAGS value does not set."""
  named = flag_names(xla_flags)
  return tuple(flag for flag in PROJECT_FLAGS if flag.split('=')[0] not in named)


def without_project_flags(xla_flags: str) -> str:
  """An XLA_FLAGS value less its settings of the project flags: jaxlib's defaults for them."""
  project = flag_names(' '.join(PROJECT_FLAGS))
  return shlex.join(word for word in shlex.split(xla_flags) if word.split('=')[0] not in project)


def backends_started() -> bool:
  """Whether JAX has started a backend (XLA_FLAGS is read by then); False
  without importing JAX if nothing has."""
  bridge = sys.modules.get('jax._src.xla_bridge')
  return bridge is not None and bridge.backends_are_initialized()


def use_project_flags() -> None:
  """Adds the project's flags to this process's XLA_FLAGS (and so its
  children's), keeping the user's own value of each; call it before any JAX
  computation. Once JAX has started a backend the flags can no longer take
  effect in this process: then it warns and changes nothing."""
  current = os.environ.get('XLA_FLAGS', '')
  missing = missing_project_flags(current)
  if not missing:
    return
  if backends_started():
    warnings.warn(
      f'acnet_jax.xla_cpu.use_project_flags() was called after JAX started its backends: '
      f'{" ".join(missing)} cannot take effect in this process, whose convolutions stay '
      f"on jaxlib's default library (YNNPACK on a CPU; slower, and rounded otherwise than "
      f"the commands'). Call it before any JAX computation (in a notebook: restart the "
      f'kernel, call it in the first cell).',
      RuntimeWarning,
      stacklevel=2,
    )
    return
  os.environ['XLA_FLAGS'] = ' '.join([current, *missing]).strip()
