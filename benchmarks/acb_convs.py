"""What an ACB's three convolutions cost beside the square one alone, op by op.

For each shape: the forward pass, the input gradient and the weight gradient
of the KxK, Kx1 and 1xK convs (symmetric padding, stride 1, as the ACB runs
them), each jitted alone on a batch already on device, the nine of a shape
interleaved round by round; ms (median) and GFLOP/s. The last column is what
the ACB's three convs cost over the square conv's: against its FLOPs' (1 +
2/K), it says how much of acnet's extra train step the convolutions are.
Defaults: ResNet-56's three stages at batch 64.

    python -m benchmarks.acb_convs [--shapes=64x32x32x16,64x16x16x32,64x8x8x64 --kernel=3]

Its rows go to results/benchmarks/acb_convs.jsonl (`acnet_jax.benchmarking.results`).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from acnet_jax import xla_cpu
from acnet_jax.benchmarking import results
from acnet_jax.benchmarking.timing import interleaved_times, summary
from acnet_jax.blocks.acb import acb_branch_shapes
from acnet_jax.blocks.primitives import conv_with_kernel

PASSES = ('forward', 'input gradient', 'weight gradient')


def conv_passes(
  shape: tuple[int, int, int, int], kernel_shape: tuple[int, int]
) -> dict[str, Callable[[], jax.Array]]:
  """Pass -> a call of it, compiled, for one stride-1 conv from C to C
  channels over an NHWC `shape`."""
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  dy = jax.random.normal(jax.random.PRNGKey(1), shape)
  kernel = jax.random.normal(jax.random.PRNGKey(2), (*kernel_shape, shape[-1], shape[-1])) * 0.1

  def forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return conv_with_kernel(x, kernel, strides=1, feature_group_count=1)

  def input_gradient(kernel: jax.Array, dy: jax.Array) -> jax.Array:
    return jax.vjp(lambda x: forward(x, kernel), x)[1](dy)[0]

  def weight_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
    return jax.vjp(lambda kernel: forward(x, kernel), kernel)[1](dy)[0]

  passes = {
    'forward': (forward, x, kernel),
    'input gradient': (input_gradient, kernel, dy),
    'weight gradient': (weight_gradient, x, dy),
  }
  calls = {}
  for name, (fn, *args) in passes.items():
    compiled = jax.jit(fn).lower(*args).compile()
    calls[name] = functools.partial(compiled, *args)
  return calls


def gflops(shape: tuple[int, int, int, int], kernel_shape: tuple[int, int]) -> float:
  """Of one pass (each of the three does the same multiply-adds)."""
  n, h, w, c = shape
  return 2 * n * h * w * c * c * kernel_shape[0] * kernel_shape[1] / 1e9


def shape_rows(shape: tuple[int, int, int, int], k: int, repeats: int) -> list[dict[str, Any]]:
  """A row per branch and pass: its median seconds and GFLOP/s, every pass of
  every branch interleaved round by round (`interleaved_times`), so drift
  moves the branches alike."""
  branches = acb_branch_shapes(k)
  candidates = {}
  for name, kernel_shape in branches.items():
    for pass_name, call in conv_passes(shape, kernel_shape).items():
      candidates[f'{name}/{pass_name}'] = call
  times = interleaved_times(candidates, repeats, warmup=1)
  rows = []
  for name, kernel_shape in branches.items():
    for pass_name in PASSES:
      seconds = summary(times[f'{name}/{pass_name}'])['median_s']
      rows.append(
        {
          'shape': 'x'.join(map(str, shape)),
          'branch': name,
          'conv': 'x'.join(map(str, kernel_shape)),
          'pass': pass_name,
          'seconds': seconds,
          'gflop_per_s': gflops(shape, kernel_shape) / seconds,
          'repeats': repeats,
        }
      )
  return rows


def by_branch(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], dict[str, Mapping]]:
  """(shape, branch, conv) -> pass -> its row, in the rows' order."""
  grouped: dict[tuple[str, str, str], dict[str, Mapping]] = {}
  for row in rows:
    grouped.setdefault((row['shape'], row['branch'], row['conv']), {})[row['pass']] = row
  return grouped


def branch_table(rows: Sequence[Mapping[str, Any]], k: int) -> list[str]:
  """The printed table of one shape's rows, and what its three convs cost over the square one."""
  lines, total = [], {}
  for (shape, name, _), passes in by_branch(rows).items():
    cells = ''.join(
      f'{passes[p]["seconds"] * 1e3:9.2f} ms {passes[p]["gflop_per_s"]:6.1f}' for p in PASSES
    )
    lines.append(f'{shape:14}{name:8}{cells}')
    total[name] = sum(passes[p]['seconds'] for p in PASSES)
  ratio = sum(total.values()) / total['square']
  lines.append(f"{'':14}ACB's three convs / square conv: {ratio:.2f} (FLOPs {1 + 2 / k:.2f})")
  return lines


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
  """The docs' table: ms and GFLOP/s of each pass, a line per shape and conv."""
  lines, shapes = [], set()
  for (shape, _, conv), passes in by_branch(rows).items():
    cells = [f'{passes[p]["seconds"] * 1e3:.2f} ms, {passes[p]["gflop_per_s"]:.1f}' for p in PASSES]
    lines.append(['' if shape in shapes else shape, conv, *cells])
    shapes.add(shape)
  return results.markdown_table(['N x H x W x C', 'conv', *PASSES], lines)


def main(argv: Sequence[str] | None = None) -> None:
  xla_cpu.use_project_flags()
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument(
    '--shapes',
    default='64x32x32x16,64x16x16x32,64x8x8x64',
    help='NHWC activation shapes, comma-separated.',
  )
  parser.add_argument('--kernel', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--results_dir', default=results.RESULTS_DIR, help=results.RESULTS_DIR_HELP)
  args = parser.parse_args(argv)
  shapes = [tuple(int(d) for d in text.split('x')) for text in args.shapes.split(',')]
  if any(len(shape) != 4 for shape in shapes):
    parser.error(f'a shape is NxHxWxC, got {args.shapes!r}')
  device = jax.devices()[0]
  context = results.run_context(
    results.command_line('benchmarks.acb_convs', argv),
    f'1 x {device.device_kind} ({device.platform})',
    results.JAX_PACKAGES,
  )
  print(f'{"N x H x W x C":14}{"conv":8}' + ''.join(f'{p:>19}' for p in PASSES))
  print(f'{"":22}' + ''.join(f'{"ms":>11} {"GFLOP/s":>7}' for _ in PASSES))
  rows = []
  for shape in shapes:
    measured = shape_rows(shape, args.kernel, args.repeats)
    print('\n'.join(branch_table(measured, args.kernel)), flush=True)
    rows += measured
  path = results.append_rows('acb_convs', rows, args.results_dir, context)
  if path:
    print(f'appended its rows to {path}')


if __name__ == '__main__':
  main()
