"""The project's XLA:CPU flags: added to XLA_FLAGS unless the user set them, and
in force in a process that imports acnet_jax before computing."""

from __future__ import annotations

import os
import subprocess
import sys

from acnet_jax import xla_cpu

CONV_IN_A_FRESH_PROCESS = """
import os, acnet_jax, jax, jax.numpy as jnp
conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME')
jax.block_until_ready(jax.jit(conv)(jnp.ones((2, 4, 8, 8)), jnp.ones((4, 4, 3, 3))))
print(os.environ['XLA_FLAGS'])
"""


def test_the_flags_are_added_to_the_users_flags():
  environ = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  xla_cpu.with_project_flags(environ)
  assert environ['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                                  '--xla_cpu_experimental_ynn_fusion_type=')
  empty: dict[str, str] = {}
  xla_cpu.with_project_flags(empty)
  assert empty['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type='


def test_the_users_own_setting_wins():
  environ = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'}
  xla_cpu.with_project_flags(environ)
  assert environ['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'


def test_a_process_that_imports_acnet_jax_computes_under_the_flags():
  # The flag lives below HLO (XLA:CPU picks a conv's library when it emits the
  # program), so what is checked is that it was in XLA_FLAGS when the backend
  # started and that this jaxlib accepts it (an unknown flag aborts the process).
  env = {key: value for key, value in os.environ.items() if key != 'XLA_FLAGS'}
  completed = subprocess.run([sys.executable, '-c', CONV_IN_A_FRESH_PROCESS], env=env,
                             check=True, capture_output=True, text=True)
  assert completed.stdout.split() == ['--xla_cpu_experimental_ynn_fusion_type=']
