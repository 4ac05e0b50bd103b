"""The project's XLA:CPU flags: importing acnet_jax sets nothing; the commands
call `use_project_flags`, which adds them to XLA_FLAGS unless the user names
them, and which moves a convolution off YNNPACK in the compiled program."""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
import sys

import jax
import pytest

from acnet_jax import xla_cpu
from acnet_jax.xla_cpu import canaries, flags
from tests.support.runs import ROOT
from tests.support.torch_extra import require_torch

# use_project_flags, then the flag's canary probe: prints whether XLA:CPU
# compiled a convolution into a YNNPACK fusion.
CONV_IN_A_FRESH_PROCESS = (
  """
from acnet_jax import xla_cpu
xla_cpu.use_project_flags()
"""
  + canaries.YNN_PROBE
)

# What importing the package and every command changes in the process.
IMPORT_IN_A_FRESH_PROCESS = """
import os, jax
from jax._src import xla_bridge
environ, settings = dict(os.environ), dict(jax.config.values)
import acnet_jax, acnet_jax.main, acnet_jax.benchmark, acnet_jax.export, acnet_jax.analyze
import acnet_jax.convert
print(os.environ.get('XLA_FLAGS'))
print(dict(os.environ) == environ, dict(jax.config.values) == settings,
      xla_bridge.backends_are_initialized())
"""

USERS_FLAGS = '--xla_force_host_platform_device_count=2'


def fresh_process(script: str, *args: str, xla_flags: str | None) -> list[str]:
  env = {key: value for key, value in os.environ.items() if key != 'XLA_FLAGS'}
  env['PYTHONPATH'] = str(ROOT)
  if xla_flags is not None:
    env['XLA_FLAGS'] = xla_flags
  completed = subprocess.run(
    [sys.executable, '-c', script, *args],
    env=env,
    cwd=ROOT,
    check=True,
    capture_output=True,
    text=True,
  )
  return completed.stdout.splitlines()


@pytest.fixture
def before_jax_starts(monkeypatch):
  """This process's XLA_FLAGS (restored after the test), as if no backend had started."""
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.setattr(flags, 'backends_started', lambda: False)


def test_the_flags_are_added_to_the_users_flags(before_jax_starts, monkeypatch):
  xla_cpu.use_project_flags()
  assert os.environ['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type='
  monkeypatch.setenv('XLA_FLAGS', USERS_FLAGS)
  xla_cpu.use_project_flags()
  assert os.environ['XLA_FLAGS'] == f'{USERS_FLAGS} --xla_cpu_experimental_ynn_fusion_type='


@pytest.mark.parametrize(
  'users_flags',
  [
    '--xla_cpu_experimental_ynn_fusion_type=individual_convolution',
    f'--xla_cpu_experimental_ynn_fusion_type= {USERS_FLAGS}',
    "--xla_cpu_experimental_ynn_fusion_type='individual_convolution'",
  ],
)
def test_the_users_own_setting_wins(before_jax_starts, monkeypatch, users_flags):
  monkeypatch.setenv('XLA_FLAGS', users_flags)
  xla_cpu.use_project_flags()
  assert os.environ['XLA_FLAGS'] == users_flags


@pytest.mark.parametrize(
  'users_flags',
  [
    '--xla_dump_to=/tmp/--xla_cpu_experimental_ynn_fusion_type=x',
    '--xla_cpu_experimental_ynn_fusion_type_of_another_flag=1',
  ],
)
def test_a_flag_is_the_users_only_by_its_name_not_a_substring(users_flags):
  assert flags.missing_project_flags(users_flags) == flags.PROJECT_FLAGS


def test_without_the_project_flags_keeps_every_other_flag():
  users = f"{USERS_FLAGS} --xla_dump_to='/tmp/a b'"
  for xla_flags in (f'{users} {flags.PROJECT_FLAGS[0]}', users):
    assert shlex.split(flags.without_project_flags(xla_flags)) == shlex.split(users)


def test_after_jax_started_it_warns_and_changes_nothing(monkeypatch):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  jax.devices()  # Starts the backends, if no test has yet.
  with pytest.warns(RuntimeWarning, match='cannot take effect in this process'):
    xla_cpu.use_project_flags()
  assert 'XLA_FLAGS' not in os.environ


@pytest.mark.parametrize('xla_flags', [None, pytest.param(USERS_FLAGS, marks=pytest.mark.full)])
def test_importing_acnet_jax_changes_no_environment_variable_and_no_jax_setting(xla_flags):
  printed, unchanged = fresh_process(IMPORT_IN_A_FRESH_PROCESS, xla_flags=xla_flags)
  assert printed == str(xla_flags)
  # The environment, JAX's settings, and no backend started (the commands'
  # use_project_flags() still comes in time).
  assert unchanged.split() == ['True', 'True', 'False']


# Whether jaxlib's default still hands the convolution to YNNPACK: the flag's canary.
@pytest.mark.parametrize(
  'xla_flags, on_ynnpack',
  [
    (None, False),  # The project's flag: Eigen's convolution.
    ('--xla_cpu_experimental_ynn_fusion_type=individual_convolution', True),  # The user's.
  ],
)
def test_the_flag_takes_the_convolution_off_ynnpack(xla_flags, on_ynnpack):
  assert fresh_process(CONV_IN_A_FRESH_PROCESS, xla_flags=xla_flags) == [str(on_ynnpack)]


class Called(Exception):
  pass


COMMANDS = {
  'acnet_jax.main': lambda m: m.main(['main']),
  'acnet_jax.benchmark': lambda m: m.main([]),
  'acnet_jax.export': lambda m: m.main(['export']),
  'acnet_jax.analyze': lambda m: m.main(['analyze']),
  'acnet_jax.convert': lambda m: m.main(['convert']),
  'benchmarks.acb_convs': lambda m: m.main(),
  'benchmarks.acnet_over_normal': lambda m: m.jax_runs('rc8', 8),
  'benchmarks.lockstep': lambda m: m.main(),
  'benchmarks.xla_cpu_workarounds': lambda m: m.main([]),
}


# The lockstep runs the authors' PyTorch code: the full tier, which has torch.
NEEDS_TORCH = {'benchmarks.lockstep'}


@pytest.mark.parametrize(
  'command',
  [
    pytest.param(name, marks=[pytest.mark.full, pytest.mark.needs_torch])
    if name in NEEDS_TORCH
    else name
    for name in sorted(COMMANDS)
  ],
)
def test_every_command_sets_the_flags_before_it_does_anything_else(command, monkeypatch):
  if command in NEEDS_TORCH:
    require_torch()

  def called() -> None:
    raise Called

  monkeypatch.setattr(xla_cpu, 'use_project_flags', called)
  with pytest.raises(Called):
    COMMANDS[command](importlib.import_module(command))
