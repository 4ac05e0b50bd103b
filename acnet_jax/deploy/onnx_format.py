"""The deploy model as ONNX, converted from its JAX function by jax2onnx (the
`onnx` extra).

jax2onnx maps each JAX primitive onto ONNX ops. Three things stand between it
and the deploy function, resolved here in one pass over the function's jaxpr
(`inlined`):
- the ReLU, pooling (and BN) ops choose their CPU form with
  `jax.lax.platform_dependent` (`xla_cpu/dispatch.py`), which jax2onnx cannot
  convert: the branch for other platforms is taken, the plain op, whose
  forward values are the CPU form's (pooling and BN differ only in their
  gradients, ReLU in its form: max, not a select);
- nested jits and custom-gradient calls are inlined, so that the choice
  inside them is resolved too; an exported graph has no gradients;
- jax2onnx 0.13 lowers a pooling `reduce_window` over an NHWC array as a 4-D
  pool, which ONNX Runtime refuses: pools become flax's `max_pool` and
  `avg_pool` (padding made explicit), which jax2onnx converts to 2-D ONNX
  pools between transposes (and which compute the same values in JAX).

After conversion the graph's shape annotations of intermediate tensors are
inferred again (`reannotated`): jax2onnx 0.13, folding the transposes around
a ReLU between residual sums, keeps those sums' NHWC annotations on tensors it
has made NCHW, and ONNX Runtime refuses the model (ResNet-20's deploy form).

(tf2onnx cannot serve instead: the SavedModel holds the function as one
XlaCallModule op of serialized StableHLO, which it does not convert.)
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

ONNX_FILE = 'model.onnx'
# The oldest opset jax2onnx's ops are written for (ReduceMean takes its axes as an input
# from 18): ONNX Runtime 1.14+ and TensorRT 10 read it; per-channel QDQ needs 13+.
OPSET = 18
INPUT_NAME, OUTPUT_NAME = 'images', 'logits'
# Primitives whose body is inlined: nested jits, custom JVP and VJP calls (the forward only).
INLINED = {
  'pjit': 'jaxpr',
  'jit': 'jaxpr',
  'closed_call': 'call_jaxpr',
  'custom_jvp_call': 'call_jaxpr',
  'custom_vjp_call': 'call_jaxpr',
}
POOLS = ('reduce_window_max', 'reduce_window_sum')


def pooled(name: str, x: jax.Array, params: dict[str, Any]) -> jax.Array | None:
  """A 2-D max or sum pool over NHWC `x` through flax's pools; None for any other window."""
  window, strides, padding = (
    params['window_dimensions'],
    params['window_strides'],
    params['padding'],
  )
  plain = all(params[key] == (1, 1, 1, 1) for key in ('base_dilation', 'window_dilation'))
  if not (
    plain
    and x.ndim == 4
    and window[0] == window[3] == strides[0] == strides[3] == 1
    and padding[0] == padding[3] == (0, 0)
  ):
    return None
  fill = -jnp.inf if name == 'reduce_window_max' else 0.0
  if any(padding[1] + padding[2]):
    x = jnp.pad(x, padding, constant_values=fill)
  options = dict(window_shape=window[1:3], strides=strides[1:3], padding='VALID')
  if name == 'reduce_window_max':
    return nn.max_pool(x, **options)
  return nn.avg_pool(x, **options) * (window[1] * window[2])


def evaluated(jaxpr: jax_core.Jaxpr, consts: Sequence[Any], *args: Any) -> list[Any]:
  """`jaxpr` re-run op by op, with calls inlined and every platform choice
  taken as on a platform other than the CPU."""
  env: dict[Any, Any] = {}
  read = lambda var: var.val if isinstance(var, jax_core.Literal) else env[var]
  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    values = [read(var) for var in eqn.invars]
    name = eqn.primitive.name
    if name == 'platform_index':  # Read only by the cond below, which no longer needs it.
      outputs = [0]
    elif name == 'cond' and eqn.params.get('branches_platforms'):
      branch = eqn.params['branches'][eqn.params['branches_platforms'].index(None)]
      outputs = evaluated(branch.jaxpr, branch.consts, *values[1:])
    elif name in POOLS and (result := pooled(name, values[0], eqn.params)) is not None:
      outputs = [result]
    elif name in INLINED:
      body = eqn.params[INLINED[name]]
      outputs = evaluated(body.jaxpr, body.consts, *values[: len(body.jaxpr.invars)])
    else:
      result = eqn.primitive.bind(*values, **eqn.params)
      outputs = result if eqn.primitive.multiple_results else [result]
    env.update(zip(eqn.outvars, outputs))
  return [read(var) for var in jaxpr.outvars]


def inlined(function: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
  """`function` as one flat program of plain XLA ops, traced at its input's
  (possibly symbolic) shape."""

  def flat(x: jax.Array) -> jax.Array:
    closed = jax.make_jaxpr(function)(jax.ShapeDtypeStruct(x.shape, x.dtype))
    return evaluated(closed.jaxpr, closed.consts, x)[0]

  return flat


# Loggers that warn of nothing wrong with the model: jax2onnx, of each of its
# dm_pix plugins (which no model here uses; written for an older JAX) with a
# traceback, and onnx_ir, of each constant's shape tensor it leaves
# unannotated (annotations are optional; the graph is complete).
QUIETED = ('jax2onnx.plugins.plugin_system', 'onnx_ir.serde')


@contextlib.contextmanager
def quieted(names: Sequence[str]) -> Iterator[None]:
  """Those loggers at ERROR, and stdout silent (jax2onnx's plugins print debug lines)."""
  loggers = [logging.getLogger(name) for name in names]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def save_onnx(
  logits: Callable[[jax.Array], jax.Array], image_shape: tuple[int, int, int], path: str
) -> None:
  """An ONNX model `images [batch, H, W, C] -> logits`, `batch` symbolic."""
  with quieted(QUIETED):
    import jax2onnx  # Only with the onnx extra.

    jax2onnx.to_onnx(
      inlined(logits),
      [('batch', *image_shape)],
      model_name='deploy',
      opset=OPSET,
      return_mode='file',
      output_path=path,
      input_names=[INPUT_NAME],
      output_names=[OUTPUT_NAME],
    )
  reannotated(path)


def reannotated(path: str) -> None:
  """The ONNX model at `path` with its intermediate tensors' shapes inferred
  anew from its inputs (the annotations are optional; ONNX Runtime checks them)."""
  import onnx

  model = onnx.load(path)
  del model.graph.value_info[:]
  onnx.save(onnx.shape_inference.infer_shapes(model, strict_mode=True), path)
