"""Whether the plain op still shows the defect each CPU workaround exists for.

One function per workaround: it compiles the op it watches (the plain one by
default) for the CPU, never runs it, and returns True while the compiled
program shows the defect. The shapes are tiny, or the one the defect was
measured at where XLA decides by shape. When one returns False
(tests/xla_cpu/test_canaries.py warns, and fails nothing), time the workaround
against the plain op, `python -m benchmarks.xla_cpu_workarounds`, and where it
no longer pays delete it in one commit: its module here, its op in `dispatch`,
its canary, its benchmark row and its tests.

    ynn_convolutions       the flag: jaxlib's default hands a convolution to YNNPACK (a fresh
                           process without the flag). Whether YNNPACK's convolutions are still
                           the slower ones here, only timing can tell.
    recomputed_relu_sums   ReLU: with jax.nn.relu, one fused op of a residual chain's compiled
                           gradient reads 4 or more convolutions' outputs (it recomputes the
                           sums before it instead of reading a stored activation).
    extra_bn_reductions    BN's gradient: autodiff's compiled gradient reduces over the
                           activations more often than the closed form's.
    strided_channel_sums   BN's sums: XLA's per-channel sum of a product at ResNet-56's first
                           stage writes the product out in full, then reduces it through a
                           reduce-window.
    max_pool_scatter       max pooling: XLA's gradient is select-and-scatter's lowering, a scatter.
    avg_pool_dilated       average pooling: XLA's gradient sums windows of the output gradient
                           spread onto a grid dilated by the stride (zeros between its
                           elements): input-sized work, where the per-offset form adds
                           output-sized arrays. Whether that still costs more, only timing
                           can tell.
    slow_init_compile      the init's compiler options: a threefry normal draw compiles
                           over twice as long at XLA's default optimisation as at level 0
                           (compile times, of a program made new each call: no cache hit).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from acnet_jax.xla_cpu import batch_norm, flags, init_compile, pooling

Shape = tuple[int, ...]
EPSILON = 1e-5
# An HLO instruction of the ENTRY computation: name, result shape, op, operands.
INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(([^)]*)\)', re.MULTILINE)

# Prints whether XLA:CPU compiles a 3x3 convolution into a YNNPACK fusion (32
# channels: wide enough for YNNPACK to take it).
YNN_PROBE = """
import jax, jax.numpy as jnp
conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
compiled = jax.jit(conv).lower(jnp.zeros((1, 4, 4, 32)), jnp.zeros((3, 3, 32, 32))).compile()
print('__ynn_fusion' in compiled.as_text())
"""


def is_shape(tree: Any) -> bool:
  return isinstance(tree, tuple) and all(isinstance(d, int) for d in tree)


def cpu_hlo(f: Callable, *shapes: Any) -> str:
  """The optimised HLO that XLA:CPU compiles f to, for float32 arguments of
  these shapes (pytrees of shapes), whatever this machine's default backend."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices('cpu')[0])
  specs = jax.tree.map(
    lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=cpu), shapes, is_leaf=is_shape
  )
  return jax.jit(f).lower(*specs).compile().as_text()


def entry_instructions(hlo: str) -> list[tuple[str, str, str, list[str]]]:
  """(name, shape, op, operand names) of each instruction of the ENTRY computation."""
  entry = hlo[hlo.index('\nENTRY') :]
  return [
    (name, shape.split('{')[0], op, re.findall(r'%([\w.\-]+)', operands))
    for name, shape, op, operands in INSTRUCTION.findall(entry)
  ]


def f32(shape: Shape) -> str:
  return f'f32[{",".join(map(str, shape))}]'


# ---------------------------------------------------------------- the flag


def ynn_convolutions() -> bool:
  """Whether jaxlib's default (a fresh process without the project's flag)
  hands a convolution to YNNPACK."""
  env = {
    **os.environ,
    'XLA_FLAGS': flags.without_project_flags(os.environ.get('XLA_FLAGS', '')),
    'JAX_PLATFORMS': 'cpu',
  }
  completed = subprocess.run(
    [sys.executable, '-c', YNN_PROBE], env=env, check=True, capture_output=True, text=True
  )
  return completed.stdout.split()[-1] == 'True'


# -------------------------------------------------------------------- ReLU


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A stride-1 convolution, NHWC, padded to keep the size."""
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def residual_chain_loss(activation: Callable, kernels: list[jax.Array], x: jax.Array) -> jax.Array:
  """Blocks x <- activation(x + conv(x) / 2), as a ResNet stage's sums and ReLUs."""
  for kernel in kernels:
    x = activation(x + conv_same(x, kernel) * 0.5)
  return jnp.sum(x**2)


def longest_recomputed_chain(activation: Callable, blocks: int = 6) -> int:
  """The most convolution results one fused op of a residual chain's compiled
  gradient reads: 1-2 when each block's output is stored, growing with depth
  when consumers recompute the sums before them."""
  hlo = cpu_hlo(
    jax.grad(lambda kernels, x: residual_chain_loss(activation, kernels, x)),
    [(3, 3, 4, 4)] * blocks,
    (2, 8, 8, 4),
  )
  convolutions = set(re.findall(r'%([\w.\-]+) = \S+ convolution\(', hlo))
  fusions = re.findall(r'= \S+ fusion\(([^)]*)\)', hlo)
  return max(
    sum(operand.lstrip('%') in convolutions for operand in operands.split(', '))
    for operands in fusions
  )


def recomputed_relu_sums(activation: Callable = jax.nn.relu) -> bool:
  return longest_recomputed_chain(activation) >= 4


# --------------------------------------------------------------- BatchNorm


def reductions_over(hlo: str, shape: Shape) -> int:
  """ENTRY instructions that read a `shape` array and return a smaller one:
  the passes that reduce over the activations."""
  instructions = entry_instructions(hlo)
  full = {name for name, result, _, _ in instructions if result == f32(shape)}
  return sum(
    result != f32(shape) and op != 'tuple' and any(o in full for o in operands)
    for _, result, op, operands in instructions
  )


def bn_gradient_reductions(train_batch_norm: Callable, shape: Shape) -> int:
  def gradient(x, scale, bias, dy):
    return jax.vjp(lambda *a: train_batch_norm(*a, EPSILON)[0], x, scale, bias)[1](dy)

  channels = (shape[-1],)
  return reductions_over(cpu_hlo(gradient, shape, channels, channels, shape), shape)


def extra_bn_reductions(shape: Shape = (8, 8, 8, 16)) -> bool:
  """Autodiff's BN gradient reduces over the activations more often than the
  closed form (mean, variance, d_bias, d_scale)."""
  plain = bn_gradient_reductions(batch_norm.plain_train_batch_norm, shape)
  return plain > bn_gradient_reductions(batch_norm.cpu_train_batch_norm, shape)


def strided_channel_sums(
  sums: Callable = batch_norm.xla_sums, shape: Shape = (64, 32, 32, 16)
) -> bool:
  """XLA's per-channel sum of a product, at the shape the halves were measured
  on, writes the product out in full or reduces through a reduce-window."""
  hlo = cpu_hlo(lambda x, y: sums(x * y), shape, shape)
  written_out = any(
    result == f32(shape) and op != 'parameter' for _, result, op, _ in entry_instructions(hlo)
  )
  return written_out or ' reduce-window(' in hlo


# ----------------------------------------------------------------- pooling


def pool_gradient_hlo(pool: Callable, shape: Shape) -> str:
  """Cifar-quick's pools: 3x3, stride 2, unpadded."""
  return cpu_hlo(
    lambda x: jax.grad(lambda x: jnp.sum(pool(x, (3, 3), (2, 2), 'VALID') ** 2))(x), shape
  )


def max_pool_scatter(
  pool: Callable = pooling.plain_max_pool, shape: Shape = (64, 32, 32, 32)
) -> bool:
  return re.search(r'= \S+ (select-and-)?scatter\(', pool_gradient_hlo(pool, shape)) is not None


def dilated_grid(hlo: str) -> bool:
  """Whether a reduce-window sums over a grid with zeros between its elements:
  its own base dilation (lhs_dilate), or a pad's interior zeros."""
  dilations = re.findall(r' reduce-window\([^\n]*?lhs_dilate=([\dx]+)', hlo)
  pads = re.findall(r'= \S+ pad\([^\n]*?padding=([\d_x\-]+)', hlo)
  return any(int(d) > 1 for config in dilations for d in config.split('x')) or (
    ' reduce-window(' in hlo
    and any(
      len(dim.split('_')) == 3 and int(dim.split('_')[2]) > 0
      for config in pads
      for dim in config.split('x')
    )
  )


def avg_pool_dilated(
  pool: Callable = pooling.plain_avg_pool, shape: Shape = (64, 15, 15, 32)
) -> bool:
  return dilated_grid(pool_gradient_hlo(pool, shape))


def fresh_salt() -> float:
  """A constant for a program to differ by, new in every call and process:
  a compilation cache has never seen the program."""
  return float(secrets.randbelow(2**52))


def init_compile_seconds(options: dict[str, Any], draws: int = 1) -> float:
  """Seconds XLA:CPU takes to compile `draws` threefry normal draws under `options`;
  a salt makes the program new, so that no compilation cache answers."""
  salt = fresh_salt()

  def init(key: jax.Array) -> list[jax.Array]:
    keys = jax.random.split(key, draws)
    return [jax.random.normal(k, (3, 3, 8 + i, 16)) + salt for i, k in enumerate(keys)]

  lowered = jax.jit(init).lower(jax.random.key(0))
  start = time.perf_counter()
  lowered.compile(options)
  return time.perf_counter() - start


def slow_init_compile() -> bool:
  return init_compile_seconds({}) > 2 * init_compile_seconds(init_compile.INIT_COMPILER_OPTIONS)


# The workaround each canary watches -> the canary.
CANARIES: dict[str, Callable[[], bool]] = {
  'flags.PROJECT_FLAGS': ynn_convolutions,
  'relu.cpu_relu': recomputed_relu_sums,
  'batch_norm.cpu_train_batch_norm': extra_bn_reductions,
  'pairwise_sum.channel_sums': strided_channel_sums,
  'pooling.cpu_max_pool': max_pool_scatter,
  'pooling.cpu_avg_pool': avg_pool_dilated,
  'init_compile.INIT_COMPILER_OPTIONS': slow_init_compile,
}
