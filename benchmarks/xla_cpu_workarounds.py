"""Each CPU workaround (acnet_jax/xla_cpu) timed against the plain op it
replaces, on the CPU, at the shapes it was measured on: ResNet-56's first
stage (convolution, ReLU chain, BN and its sums) and Cifar-quick's pools, batch
--batch; forward and backward, except the sums (one pass). The two are compiled
once each and called in turn (`acnet_jax.benchmarking.timing.interleaved_times`),
so the machine's drift slows both alike. The init's compiler options are timed
by what they change: Cifar-quick ACNet's init lowered and compiled, a new program
each call (another seed), so that no compilation cache answers.

    python -m benchmarks.xla_cpu_workarounds [--rounds=20 --batch=64 --blocks=9]

prints, per workaround (named as acnet_jax/xla_cpu/canaries.py's CANARIES),
the median ms of the plain op and of the workaround, and plain / workaround:
above 1 the workaround pays. One whose canary reports its defect gone and whose
ratio is near 1 can be deleted. Time only on idle cores. Its rows go to
results/benchmarks/xla_cpu_workarounds.jsonl (`acnet_jax.benchmarking.results`),
from which docs/performance.md's table is generated (`python -m benchmarks.tables`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from acnet_jax import models, xla_cpu
from acnet_jax.benchmarking import results
from acnet_jax.benchmarking.timing import interleaved_times, summary
from acnet_jax.data import keys
from acnet_jax.xla_cpu import batch_norm, canaries, init_compile, pairwise_sum, pooling
from acnet_jax.xla_cpu.relu import cpu_relu

YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
# A convolution on YNNPACK, as jaxlib's default compiles it; on Eigen, as the project's flag.
ON_YNNPACK = {YNN_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'}
ON_EIGEN = {YNN_OPTION: ''}
RESNET56_BLOCKS = 9  # Of a stage.


@dataclasses.dataclass(frozen=True)
class Case:
  workaround: str  # As canaries.CANARIES names it.
  on: str  # What it computes.
  plain: Callable
  cpu: Callable
  shapes: Callable[[int], Any]  # batch -> a pytree of the arguments' shapes.
  plain_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  cpu_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  # 'compile': plain and cpu are salt -> a function of no arguments, timed as
  # they lower and compile; shapes and the batch do not apply.
  timed: str = 'run'


def backward(f: Callable) -> Callable:
  """(inputs..., output cotangent) -> the inputs' gradients."""
  return lambda *args: jax.vjp(f, *args[:-1])[1](args[-1])


def relu_chain(activation: Callable) -> Callable:
  return jax.grad(lambda kernels, x: canaries.residual_chain_loss(activation, kernels, x), (0, 1))


def bn_backward(train_batch_norm: Callable) -> Callable:
  return backward(lambda x, scale, bias: train_batch_norm(x, scale, bias, canaries.EPSILON)[0])


def pool_backward(pool: Callable) -> Callable:
  return backward(lambda x: pool(x, (3, 3), (2, 2), 'VALID'))


def cifar_quick_init(salt: float) -> Callable[[], Any]:
  """Cifar-quick ACNet's init from the seed `salt`, a constant of the program:
  a new program for every salt."""
  model = models.create_model('cfqkbnc', 'acnet', num_classes=10)
  seed = int(salt) % 2**31
  return lambda: model.init(keys.seed_key(seed), jnp.zeros((1, 32, 32, 3)), train=False)


KERNEL = (3, 3, 16, 16)


def stage1(n: int) -> tuple[int, ...]:
  return (n, 32, 32, 16)


def cases(blocks: int) -> tuple[Case, ...]:
  """Every workaround's case; the ReLU chain with `blocks` residual blocks."""
  return (
    Case(
      'flags.PROJECT_FLAGS',
      'conv 3x3 16->16, 32x32',
      backward(canaries.conv_same),
      backward(canaries.conv_same),
      lambda n: (stage1(n), KERNEL, stage1(n)),
      plain_options=ON_YNNPACK,
      cpu_options=ON_EIGEN,
    ),
    Case(
      'relu.cpu_relu',
      f'{blocks} residual blocks, 32x32x16',
      relu_chain(jax.nn.relu),
      relu_chain(cpu_relu),
      lambda n: ([KERNEL] * blocks, stage1(n)),
    ),
    Case(
      'batch_norm.cpu_train_batch_norm',
      'BN 32x32x16',
      bn_backward(batch_norm.plain_train_batch_norm),
      bn_backward(batch_norm.cpu_train_batch_norm),
      lambda n: (stage1(n), (16,), (16,), stage1(n)),
    ),
    Case(
      'pairwise_sum.channel_sums',
      'sum of x * y, 32x32x16',
      lambda x, y: batch_norm.xla_sums(x * y),
      lambda x, y: pairwise_sum.channel_sums(x * y),
      lambda n: (stage1(n), stage1(n)),
    ),
    Case(
      'pooling.cpu_max_pool',
      'max pool 3x3/2, 32x32x32',
      pool_backward(pooling.plain_max_pool),
      pool_backward(pooling.cpu_max_pool),
      lambda n: ((n, 32, 32, 32), (n, 15, 15, 32)),
    ),
    Case(
      'pooling.cpu_avg_pool',
      'avg pool 3x3/2, 15x15x32',
      pool_backward(pooling.plain_avg_pool),
      pool_backward(pooling.cpu_avg_pool),
      lambda n: ((n, 15, 15, 32), (n, 7, 7, 32)),
    ),
    Case(
      'init_compile.INIT_COMPILER_OPTIONS',
      'Cifar-quick ACNet init, lowered and compiled',
      cifar_quick_init,
      cifar_quick_init,
      lambda n: (),
      cpu_options=init_compile.INIT_COMPILER_OPTIONS,
      timed='compile',
    ),
  )


def arguments(shapes: Any) -> Any:
  """Normal draws of these shapes, on the CPU."""
  cpu = jax.devices('cpu')[0]
  leaves, tree = jax.tree.flatten(shapes, is_leaf=canaries.is_shape)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  draws = [jax.device_put(jax.random.normal(k, shape), cpu) for k, shape in zip(keys, leaves)]
  return jax.tree.unflatten(tree, draws)


def case_row(case: Case, batch: int, rounds: int) -> dict[str, Any]:
  """The median seconds of the plain op and of the workaround, called in turn."""
  args = arguments(case.shapes(batch))
  runs = {}
  for name, f, options in (
    ('plain', case.plain, case.plain_options),
    ('cpu', case.cpu, case.cpu_options),
  ):
    if case.timed == 'compile':
      runs[name] = lambda f=f, options=options: (
        jax.jit(f(canaries.fresh_salt())).lower().compile(options)
      )
    else:
      compiled = jax.jit(f).lower(*args).compile(options)
      runs[name] = lambda compiled=compiled: compiled(*args)
  times = interleaved_times(runs, rounds, warmup=1)
  plain, cpu = (summary(times[name])['median_s'] for name in ('plain', 'cpu'))
  return {
    'workaround': case.workaround,
    'on': case.on,
    'batch': batch if case.timed == 'run' else None,
    'plain_s': plain,
    'workaround_s': cpu,
    'plain_over_workaround': plain / cpu,
    'rounds': rounds,
  }


def milliseconds(seconds: float) -> str:
  """3 significant digits, and whole milliseconds from a second up (no exponent)."""
  ms = seconds * 1e3
  return f'{ms:.3g}' if ms < 1000 else f'{ms:,.0f}'


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """The docs' table: a line per workaround."""
  return results.markdown_table(
    ['workaround', 'on', 'plain ms', 'workaround ms', 'plain / workaround'],
    [
      [
        f'`{row["workaround"]}`',
        row['on'] if row.get('batch') is None else f'{row["on"]}, batch {row["batch"]}',
        milliseconds(row['plain_s']),
        milliseconds(row['workaround_s']),
        f'{row["plain_over_workaround"]:.2f}',
      ]
      for row in rows
    ],
  )


def main(argv: Sequence[str] | None = None) -> None:
  xla_cpu.use_project_flags()
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=20, help='Timed calls of each op.')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument(
    '--blocks', type=int, default=RESNET56_BLOCKS, help="The ReLU chain's residual blocks."
  )
  parser.add_argument('--results_dir', default=results.RESULTS_DIR, help=results.RESULTS_DIR_HELP)
  args = parser.parse_args(argv)
  context = results.run_context(
    results.command_line('benchmarks.xla_cpu_workarounds', argv),
    f'1 x {jax.devices("cpu")[0].device_kind} (cpu)',
    results.JAX_PACKAGES,
  )
  print(
    f'{"workaround":36}{"on (batch " + str(args.batch) + ")":46}'
    f'{"plain ms":>10}{"workaround ms":>15}{"plain / workaround":>20}'
  )
  rows = []
  for case in cases(args.blocks):
    row = case_row(case, args.batch, args.rounds)
    print(
      f'{case.workaround:36}{case.on:46}{row["plain_s"] * 1e3:10.4g}'
      f'{row["workaround_s"] * 1e3:15.4g}{row["plain_over_workaround"]:20.2f}',
      flush=True,
    )
    rows.append(row)
  path = results.append_rows('xla_cpu_workarounds', rows, args.results_dir, context)
  if path:
    print(f'appended its rows to {path}')


if __name__ == '__main__':
  main()
