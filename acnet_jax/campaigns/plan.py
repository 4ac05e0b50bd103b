"""A campaign's plan: which runs, in which order, with which settings.

A plan file (configs/campaigns/*.py) defines `get_plan()` returning a `Plan`.
Each run is a config file (or FILE:TRY_ARG) and overrides, trained by
`python -m acnet_jax.main` into ROOT/<run name>; the plan's own overrides
apply to every run, a run's own override wins.

A run with trainer='pytorch_reference' is trained instead by the authors'
recipe in PyTorch (`python -m benchmarks.authors_reference`, the torch extra):
its `config` is that command's --arm (normal or acnet), its own overrides are
that command's flags, and the plan's overrides (acnet_jax config keys) do not
apply to it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any

from acnet_jax.errors import InputError

ScalarOverride = bool | int | float | str
RUN_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')
# What trains a run: the module run as `python -m MODULE` from the repository root.
TRAINERS = {'acnet_jax': 'acnet_jax.main', 'pytorch_reference': 'benchmarks.authors_reference'}


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: its workdir's name, its config file, the arm it belongs
  to in the results table (runs of an arm differ only by seed), its seed, and
  what trains it (a key of TRAINERS; for 'pytorch_reference', `config` is the
  arm of the authors' recipe, normal or acnet)."""

  name: str
  config: str
  arm: str
  seed: int
  overrides: Mapping[str, ScalarOverride] = dataclasses.field(default_factory=dict)
  trainer: str = 'acnet_jax'


@dataclasses.dataclass(frozen=True)
class Plan:
  """`runs` in order; `overrides` for all of them; `published` top-1 (percent)
  of each arm where a paper or the authors give one, and where it comes from."""

  name: str
  runs: tuple[Run, ...]
  overrides: Mapping[str, ScalarOverride] = dataclasses.field(default_factory=dict)
  published: Mapping[str, float] = dataclasses.field(default_factory=dict)
  published_source: str = ''

  def __post_init__(self):
    names = [run.name for run in self.runs]
    for run in self.runs:
      if not RUN_NAME.fullmatch(run.name):
        raise InputError(
          f'plan {self.name!r}: run name {run.name!r} is not a folder name (letters, digits, _ . -)'
        )
      if run.trainer not in TRAINERS:
        raise InputError(
          f'plan {self.name!r}: run {run.name!r} has trainer {run.trainer!r}; '
          f'the trainers are {", ".join(TRAINERS)}'
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
      raise InputError(
        f'plan {self.name!r} names runs {", ".join(repeated)} more than once; '
        'two runs would share a workdir'
      )

  def arms(self) -> tuple[str, ...]:
    """The arms in the order their first run appears."""
    return tuple(dict.fromkeys(run.arm for run in self.runs))


def load_plan(path: str) -> Plan:
  """The Plan that the file's get_plan() returns."""
  if not os.path.isfile(path):
    raise InputError(f'no plan file {path!r}; the plans are in configs/campaigns/')
  spec = importlib.util.spec_from_file_location('acnet_jax_plan', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_plan'):
    raise InputError(f'the plan file {path!r} defines no get_plan()')
  plan = module.get_plan()
  if not isinstance(plan, Plan):
    raise InputError(f'get_plan() of {path!r} returned {type(plan).__name__}, not a Plan')
  return plan


def format_value(value: ScalarOverride) -> str:
  """As config_flags parses it back: True/False, numbers, strings as they are."""
  if not isinstance(value, (bool, int, float, str)):
    raise InputError(f'an override must be a bool, number or string; got {value!r}')
  return str(value)


def overrides_of(plan: Plan, run: Run, data_dir: str | None) -> dict[str, Any]:
  """Every --config.KEY of the run: the plan's, the run's own, its seed, and
  the data folder given to this start (not part of the training trajectory)."""
  merged = {**plan.overrides, **run.overrides, 'seed': run.seed}
  if data_dir:
    merged['data_dir'] = data_dir
  return merged


def train_arguments(plan: Plan, run: Run, workdir: str, data_dir: str | None) -> list[str]:
  """The arguments of `python -m acnet_jax.main` that train the run."""
  overrides = overrides_of(plan, run, data_dir)
  return [
    f'--config={run.config}',
    f'--workdir={workdir}',
    *(f'--config.{key}={format_value(value)}' for key, value in overrides.items()),
  ]


def reference_arguments(run: Run, workdir: str, data_dir: str | None) -> list[str]:
  """The arguments of `python -m benchmarks.authors_reference` that train the
  run: its arm, seed and own overrides as flags (the plan's are not its keys)."""
  overrides = {**run.overrides, 'seed': run.seed, **({'data_dir': data_dir} if data_dir else {})}
  return [
    f'--workdir={workdir}',
    f'--arm={run.config}',
    *(f'--{key}={format_value(value)}' for key, value in overrides.items()),
  ]


def train_command(
  plan: Plan, run: Run, workdir: str, data_dir: str | None
) -> tuple[str, list[str]]:
  """(the module run as `python -m MODULE`, its arguments) that train the run."""
  if run.trainer == 'pytorch_reference':
    return TRAINERS[run.trainer], reference_arguments(run, workdir, data_dir)
  return TRAINERS[run.trainer], train_arguments(plan, run, workdir, data_dir)
