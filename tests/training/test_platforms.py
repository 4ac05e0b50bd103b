"""Every platform's train and eval steps take their own branch of each platform
choice (`acnet_jax/xla_cpu/dispatch.py`): lowered for cuda and tpu they are the
program of a build without the CPU forms, lowered for cpu that of a build with
only the CPU forms, for every conv kind (the eval step also runs each kind's
fused deploy model). Lowering needs no device, so a CPU checks all three.

Cifar-quick (cfqkbnc) has every dispatched op: ReLU, BN, a max pool and
average pools (and the DBB's average branch)."""

from __future__ import annotations

import collections
import functools
import re
import sys

import jax
import pytest

from acnet_jax.training import steps
from acnet_jax.training.trainer import Trainer, create_mesh
from acnet_jax.xla_cpu import dispatch
from tests.support.runs import tiny_config

KINDS = [
  ('normal', False),
  ('acnet', False),
  ('dbb', False),
  ('repvgg', False),
  ('acnet', True),
  ('dbb', True),
  ('repvgg', True),
]
KIND_IDS = [f'{conv}{"-online" if online else ""}' for conv, online in KINDS]
# The CPU forms are the BN, ReLU and pooling every kind shares: the fast tier
# checks them in the normal, ACNet and online ACNet steps, the full tier in all
# (the fast tier stays under 5 minutes).
FAST_KINDS = {('normal', False), ('acnet', False), ('acnet', True)}
KIND_CASES = [
  pytest.param(*kind, id=name, marks=() if kind in FAST_KINDS else pytest.mark.full)
  for kind, name in zip(KINDS, KIND_IDS)
]
PLATFORMS = ('cpu', 'cuda', 'tpu')
# What a lowering for one platform keeps of a platform choice: `case`s on a
# constant index (one computes the index, one holds the chosen branch, which
# XLA inlines), their returns and the index's constants.
CHOICE_OPS = {'stablehlo.case', 'stablehlo.return', 'stablehlo.constant'}
# A branch's residuals that the other branch lacks are zeros there (cond's
# partial evaluation): a constant broadcast that no op of the chosen branch reads.
ZEROS = re.compile(r'stablehlo\.broadcast_in_dim %c\w*, dims = \[\]')
# Cifar-quick's ReLUs: after conv1, conv2, conv3 and fc1.
RELUS = 4


def only(form: str):
  """on_cpu_or_plain that builds only `form` ('cpu' or 'plain'), no choice."""

  def choose(cpu, plain, *operands, **static):
    return (cpu if form == 'cpu' else plain)(*operands, **static)

  return choose


def with_dispatch(choose, build):
  """`build()` with every module's `on_cpu_or_plain` (dispatch's own included)
  replaced by `choose`."""
  original = dispatch.on_cpu_or_plain
  users = [
    module
    for name, module in list(sys.modules.items())
    if name.startswith('acnet_jax.') and getattr(module, 'on_cpu_or_plain', None) is original
  ]
  assert users, 'no module dispatches through dispatch.on_cpu_or_plain'
  try:
    for module in users:
      module.on_cpu_or_plain = choose
    return build()
  finally:
    for module in users:
      module.on_cpu_or_plain = original


def traced_steps(conv: str, online: bool, names=('train', 'eval')) -> dict[str, jax.stages.Traced]:
  """The tiny run's jitted train and eval steps, traced on abstract state."""
  config = tiny_config(model='cfqkbnc', conv=conv, online=online, batch_size=8, eval_batch_size=8)
  trainer = Trainer(config, create_mesh())
  state = trainer.abstract_state
  traced = {'train': lambda: trainer.train_step.trace(state, trainer.train_inputs(0))}
  if 'eval' in names:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    deploy = dict(
      zip(('params', 'batch_stats'), jax.eval_shape(trainer.fuse, state.params, state.batch_stats))
    )
    totals = jax.eval_shape(lambda: steps.zero_totals(config.num_classes))
    inputs, mask = next(trainer.feed.eval_inputs())
    traced['eval'] = lambda: trainer.eval_step.trace(totals, variables, deploy, inputs, mask)
  return {name: traced[name]() for name in names}


# What each build is lowered for: the plain ops' build for the other
# platforms, the CPU forms' build for the CPU.
LOWERINGS = {
  'real': [(step, p) for step in ('train', 'eval') for p in PLATFORMS],
  'plain': [(step, p) for step in ('train', 'eval') for p in ('cuda', 'tpu')],
  'cpu': [('train', 'cpu'), ('eval', 'cpu')],
}


@functools.cache
def programs(build: str, conv: str, online: bool) -> dict[tuple[str, str], str]:
  """StableHLO text by (step, platform): build 'real' (the choice at lowering),
  'plain' (no CPU form) or 'cpu' (only the CPU forms)."""
  names = tuple(dict.fromkeys(step for step, _ in LOWERINGS[build]))
  traced = (
    traced_steps(conv, online, names)
    if build == 'real'
    else with_dispatch(only(build), lambda: traced_steps(conv, online, names))
  )
  return {
    (step, p): traced[step].lower(lowering_platforms=(p,)).as_text() for step, p in LOWERINGS[build]
  }


def op_counts(program: str) -> collections.Counter:
  """Ops by name. A call prints as `call` in a function's body and as
  `func.call` in a case's region: both count as func.call."""
  ops = re.findall(r'^\s*(?:%[^=]*= )?"?((?:[a-z_]+\.)?[a-z_]+)[ "(@]', program, re.MULTILINE)
  return collections.Counter(
    'func.call' if op == 'call' else op for op in ops if '.' in op or op == 'call'
  )


def assert_same_program_but_the_choice(actual: str, expected: str) -> None:
  """`actual` has every op of `expected`, and beyond them only the platform
  choice and zeros standing in for the other branch's residuals."""
  ops, expected_ops = op_counts(actual), op_counts(expected)
  assert not expected_ops - ops, f'ops missing: {dict(expected_ops - ops)}'
  extra = ops - expected_ops
  zeros = len(ZEROS.findall(actual)) - len(ZEROS.findall(expected))
  assert extra.pop('stablehlo.broadcast_in_dim', 0) <= max(zeros, 0), (
    'a broadcast beyond the zeros of the other branch'
  )
  assert set(extra) <= CHOICE_OPS, f'ops of the other branch: {dict(extra)}'


@pytest.mark.parametrize('conv,online', KIND_CASES)
def test_cuda_and_tpu_run_the_plain_ops_and_nothing_of_the_cpu_forms(conv, online):
  real, plain = programs('real', conv, online), programs('plain', conv, online)
  # The reference has no choice left: every dispatch was replaced.
  assert all('stablehlo.case' not in program for program in plain.values())
  for step in ('train', 'eval'):
    for p in ('cuda', 'tpu'):
      assert_same_program_but_the_choice(real[step, p], plain[step, p])
  # XLA's max-pool gradient, not the CPU's per-offset form.
  assert all('select_and_scatter' in real['train', p] for p in ('cuda', 'tpu'))
  # jax.nn.relu (a maximum) where the CPU has its select, once per ReLU.
  cpu_maxima = op_counts(real['train', 'cpu'])['stablehlo.maximum']
  for p in ('cuda', 'tpu'):
    assert op_counts(real['train', p])['stablehlo.maximum'] - cpu_maxima == RELUS


@pytest.mark.parametrize('conv,online', KINDS, ids=KIND_IDS)
def test_the_cpu_runs_the_cpu_forms(conv, online):
  real, cpu = programs('real', conv, online), programs('cpu', conv, online)
  for step in ('train', 'eval'):  # Inference too: the ReLU's select is a forward op.
    assert 'stablehlo.case' not in cpu[step, 'cpu']
    assert_same_program_but_the_choice(real[step, 'cpu'], cpu[step, 'cpu'])
  assert 'select_and_scatter' not in real['train', 'cpu']


@pytest.mark.full  # 13 s of compilation; the fast tier stays under 5 minutes.
def test_xla_plans_the_same_memory_for_the_cuda_train_step_as_without_the_cpu_forms():
  """The zeros that stand in for the CPU forms' residuals (and the choice's
  cases) cost nothing once compiled. Compiled by this machine's backend: here
  XLA:CPU compiles the program lowered for cuda (on a GPU, XLA:GPU does)."""

  def memory(build):
    choose = dispatch.on_cpu_or_plain if build == 'real' else only('plain')
    traced = with_dispatch(choose, lambda: traced_steps('normal', False, ('train',)))
    stats = traced['train'].lower(lowering_platforms=('cuda',)).compile().memory_analysis()
    return {
      name: getattr(stats, name)
      for name in (
        'argument_size_in_bytes',
        'output_size_in_bytes',
        'alias_size_in_bytes',
        'temp_size_in_bytes',
      )
    }

  assert memory('real') == memory('plain')
