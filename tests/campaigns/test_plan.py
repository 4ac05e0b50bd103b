"""Plans: loading, what a run's command line is, and the plans in configs/."""

from __future__ import annotations

import json

import pytest

from acnet_jax.campaigns.plan import (
  Plan,
  Run,
  load_plan,
  overrides_of,
  train_arguments,
  train_command,
)
from acnet_jax.errors import InputError
from acnet_jax.main import flatten_keys
from acnet_jax.training import workdir
from acnet_jax.training.config import flatten, get_config
from benchmarks import authors_reference
from tests.support.preset_table import load_config_file
from tests.support.runs import ROOT


def test_a_runs_arguments_merge_the_plans_overrides_its_own_and_its_seed():
  plan = Plan(
    'p',
    (
      Run(
        'a',
        'configs/cfqkbnc_acnet.py',
        'acnet',
        3,
        overrides={'online': True, 'eval_every_epochs': 5},
      ),
    ),
    overrides={'dataset': 'image_folder', 'eval_every_epochs': 10},
  )
  assert train_arguments(plan, plan.runs[0], 'root/a', '/data/cifar10') == [
    '--config=configs/cfqkbnc_acnet.py',
    '--workdir=root/a',
    '--config.dataset=image_folder',
    '--config.eval_every_epochs=5',
    '--config.online=True',
    '--config.seed=3',
    '--config.data_dir=/data/cifar10',
  ]


def test_a_reference_run_is_the_pytorch_trainers_with_its_own_flags_only():
  plan = Plan(
    'p',
    (
      Run('n', 'configs/cfqkbnc_normal.py', 'normal', 0),
      Run(
        't', 'acnet', 'acnet, PyTorch', 2, overrides={'epochs': 150}, trainer='pytorch_reference'
      ),
    ),
    overrides={'dataset': 'image_folder', 'eval_every_epochs': 10},
  )
  module, arguments = train_command(plan, plan.runs[0], 'root/n', '/data')
  assert (module, arguments) == (
    'acnet_jax.main',
    train_arguments(plan, plan.runs[0], 'root/n', '/data'),
  )
  module, arguments = train_command(plan, plan.runs[1], 'root/t', '/data')
  assert (module, arguments) == (
    'benchmarks.authors_reference',
    ['--workdir=root/t', '--arm=acnet', '--epochs=150', '--seed=2', '--data_dir=/data'],
  )
  parsed = authors_reference.parser().parse_args(arguments)
  assert (parsed.arm, parsed.seed, parsed.epochs) == ('acnet', 2, 150)


def test_an_unknown_trainer_is_refused():
  with pytest.raises(InputError, match="trainer 'torch'; the trainers are acnet_jax, "):
    Plan('p', (Run('a', 'normal', 'normal', 0, trainer='torch'),))


def test_two_runs_of_one_name_are_refused():
  with pytest.raises(InputError, match='more than once'):
    Plan('p', (Run('a', 'x.py', 'normal', 0), Run('a', 'x.py', 'normal', 1)))


def test_a_run_name_must_be_a_folder_name():
  with pytest.raises(InputError, match='not a folder name'):
    Plan('p', (Run('../a', 'x.py', 'normal', 0),))


def test_an_override_must_be_a_scalar():
  plan = Plan('p', (Run('a', 'x.py', 'normal', 0, overrides={'pixel_mean': (0.5, 0.5)}),))
  with pytest.raises(InputError, match='bool, number or string'):
    train_arguments(plan, plan.runs[0], 'a', None)


def test_a_missing_plan_file_is_one_sentence(tmp_path):
  with pytest.raises(InputError, match='no plan file'):
    load_plan(str(tmp_path / 'absent.py'))
  (tmp_path / 'empty.py').write_text('x = 1\n')
  with pytest.raises(InputError, match='defines no get_plan'):
    load_plan(str(tmp_path / 'empty.py'))


@pytest.mark.parametrize('path', sorted(ROOT.glob('configs/campaigns/*.py')), ids=lambda p: p.name)
def test_the_plans_in_configs_name_existing_configs_and_keys(path):
  plan = load_plan(str(path))
  keys = set(flatten_keys(get_config().to_dict()))
  for run in plan.runs:
    if run.trainer == 'pytorch_reference':
      assert run.config in authors_reference.ARMS, run.name
      assert set(run.overrides) <= authors_reference.flag_names(), run.name
      continue
    assert (ROOT / run.config.split(':')[0]).is_file(), run.config
    assert set(plan.overrides) | set(run.overrides) <= keys, run.name
  assert set(plan.published) <= set(plan.arms())


PLANS = {path.stem for path in ROOT.glob('configs/campaigns/*.py')}
RECORDED = sorted(ROOT.glob('results/*/*/config.json'))


@pytest.mark.parametrize(
  'recorded',
  [path for path in RECORDED if path.parent.parent.name in PLANS],
  ids=lambda p: p.parent.name,
)
def test_a_collected_runs_config_is_what_its_plan_gives_today(recorded):
  """The config.json of a finished campaign run equals its config file with
  the plan's overrides and its seed, in every key but where its data lay: a
  change to a preset that would make a resumed or repeated run another run
  fails here."""
  plan = load_plan(str(ROOT / 'configs' / 'campaigns' / f'{recorded.parent.parent.name}.py'))
  run = next(run for run in plan.runs if run.name == recorded.parent.name)
  if run.trainer == 'pytorch_reference':  # Its config.json is in the reference's own keys.
    then = json.loads(recorded.read_text())
    names = {'epochs': 'num_epochs'}  # The reference's flag names for its config keys.
    today = {names.get(flag, flag): value for flag, value in run.overrides.items()}
    assert then['trainer'] == run.trainer
    assert (then['conv'], then['seed']) == (run.config, run.seed)
    assert {key: then[key] for key in today} == today
    return
  path, _, argument = run.config.partition(':')
  config = load_config_file(ROOT / path, *([argument] if argument else []))
  config.update_from_flattened_dict(overrides_of(plan, run, data_dir=None))
  today, then = flatten(config), flatten(workdir.run_config(str(recorded.parent)))
  assert {key for key in today.keys() | then.keys() if today.get(key) != then.get(key)} == {
    'data_dir'
  }


@pytest.mark.parametrize(
  'recorded',
  [path for path in RECORDED if path.parent.parent.name not in PLANS],
  ids=lambda p: p.parent.name,
)
def test_a_recorded_run_without_a_plan_has_a_readme_that_names_it(recorded):
  """Runs collected by hand (an A/B outside any campaign) say how they were
  made in their folder's README.md, since no plan does."""
  readme = recorded.parent.parent / 'README.md'
  assert readme.is_file(), f'{recorded} has neither a plan in configs/campaigns/ nor a README.md'
  name = recorded.parent.name
  stem = name.rstrip('0123456789')
  assert name in readme.read_text() or f'{stem}S' in readme.read_text(), name
