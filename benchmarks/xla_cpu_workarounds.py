"""Each CPU workaround (acnet_jax/xla_cpu) timed against the plain op it
replaces, on the CPU, at the shapes it was measured on: ResNet-56's first
stage (convolution, ReLU chain, BN and its sums) and Cifar-quick's pools, batch
--batch; forward and backward, except the sums (one pass). The two are compiled
once each and called in turn (`benchmarks.acnet_over_normal.interleaved_times`),
so the machine's drift slows both alike.

    python -m benchmarks.xla_cpu_workarounds [--rounds=20 --batch=64 --blocks=9]

prints, per workaround (named as acnet_jax/xla_cpu/canaries.py's CANARIES),
the median ms of the plain op and of the workaround, and plain / workaround:
above 1 the workaround pays. One whose canary reports its defect gone and whose
ratio is near 1 can be deleted. Time only on idle cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax

from acnet_jax import xla_cpu
from acnet_jax.xla_cpu import batch_norm, canaries, pairwise_sum, pooling
from acnet_jax.xla_cpu.relu import cpu_relu
from benchmarks.acnet_over_normal import interleaved_times

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
  plain_options: dict[str, str] = dataclasses.field(default_factory=dict)
  cpu_options: dict[str, str] = dataclasses.field(default_factory=dict)


def backward(f: Callable) -> Callable:
  """(inputs..., output cotangent) -> the inputs' gradients."""
  return lambda *args: jax.vjp(f, *args[:-1])[1](args[-1])


def relu_chain(activation: Callable) -> Callable:
  return jax.grad(lambda kernels, x: canaries.residual_chain_loss(activation, kernels, x), (0, 1))


def bn_backward(train_batch_norm: Callable) -> Callable:
  return backward(lambda x, scale, bias: train_batch_norm(x, scale, bias, canaries.EPSILON)[0])


def pool_backward(pool: Callable) -> Callable:
  return backward(lambda x: pool(x, (3, 3), (2, 2), 'VALID'))


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
  )


def arguments(shapes: Any) -> Any:
  """Normal draws of these shapes, on the CPU."""
  cpu = jax.devices('cpu')[0]
  leaves, tree = jax.tree.flatten(shapes, is_leaf=canaries.is_shape)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  draws = [jax.device_put(jax.random.normal(k, shape), cpu) for k, shape in zip(keys, leaves)]
  return jax.tree.unflatten(tree, draws)


def time_case(case: Case, batch: int, rounds: int) -> tuple[float, float]:
  """Median ms of the plain op and of the workaround."""
  args = arguments(case.shapes(batch))
  runs = {}
  for name, f, options in (
    ('plain', case.plain, case.plain_options),
    ('cpu', case.cpu, case.cpu_options),
  ):
    compiled = jax.jit(f).lower(*args).compile(options)
    runs[name] = lambda compiled=compiled: jax.block_until_ready(compiled(*args))
  times = interleaved_times(runs, pairs=rounds, warmup=1)
  return statistics.median(times['plain']) * 1e3, statistics.median(times['cpu']) * 1e3


def table(batch: int, rounds: int, blocks: int) -> Iterator[str]:
  """The header, then one row per workaround as it is timed."""
  yield (
    f'{"workaround":34}{"on (batch " + str(batch) + ")":30}'
    f'{"plain ms":>10}{"workaround ms":>15}{"plain / workaround":>20}'
  )
  for case in cases(blocks):
    plain_ms, cpu_ms = time_case(case, batch, rounds)
    yield f'{case.workaround:34}{case.on:30}{plain_ms:10.4g}{cpu_ms:15.4g}{plain_ms / cpu_ms:20.2f}'


def main(argv: Sequence[str] | None = None) -> None:
  xla_cpu.use_project_flags()
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rounds', type=int, default=20, help='Timed calls of each op.')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument(
    '--blocks', type=int, default=RESNET56_BLOCKS, help="The ReLU chain's residual blocks."
  )
  args = parser.parse_args(argv)
  for line in table(args.batch, args.rounds, args.blocks):
    print(line, flush=True)


if __name__ == '__main__':
  main()
