"""The measurements of `python -m acnet_jax.benchmark`: the train step as
training runs it and on a ready batch, eval of each kind and of the fused
deploy model, the parts of a step, 1 vs N devices. A conv named `<kind>_online`
is that kind trained online (`config.online`). Synthetic uint8 data: the
step's work does not depend on pixels."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from acnet_jax.benchmarking import profile
from acnet_jax.benchmarking.report import GRADIENT_PARTS, ONLINE_SUFFIX, ratios
from acnet_jax.benchmarking.timing import (
  Timing,
  compile_timed,
  measure_peak,
  median_time,
  successive_steps,
  xla_flops,
  xla_peak_bytes,
)
from acnet_jax.blocks.acb import ACB_IMPLS
from acnet_jax.blocks.switch import TRAINABLE_KINDS, TRAINING_BLOCKS
from acnet_jax.errors import InputError
from acnet_jax.training import steps as train_steps
from acnet_jax.training.config import get_config, validate_config
from acnet_jax.training.trainer import DATA_AXIS, Trainer

# What --convs accepts: every trainable kind, and each re-parameterized one online.
BENCHMARK_CONVS: tuple[str, ...] = (
  *TRAINABLE_KINDS,
  *(f'{kind}{ONLINE_SUFFIX}' for kind in TRAINING_BLOCKS),
)


def parse_conv(name: str) -> tuple[str, bool]:
  """A benchmark conv name -> (config.conv, config.online): 'dbb_online' -> ('dbb', True)."""
  if name not in BENCHMARK_CONVS:
    raise InputError(
      f'unknown conv {name!r} for the benchmark; valid: {", ".join(BENCHMARK_CONVS)}'
    )
  return name.removesuffix(ONLINE_SUFFIX), name.endswith(ONLINE_SUFFIX)


def bench_config(
  model: str,
  conv: str,
  acb_impl: str,
  batch_size: int,
  eval_batch_size: int,
  train_examples: int,
  dtype: str = 'float32',
  image_size: int = 32,
) -> ml_collections.ConfigDict:
  """`conv`: a name of BENCHMARK_CONVS."""
  kind, online = parse_conv(conv)
  config = get_config()
  config.update(
    dict(
      model=model,
      conv=kind,
      online=online,
      batch_size=batch_size,
      eval_batch_size=eval_batch_size,
      dataset='synthetic',
      synthetic_examples=train_examples,
      dtype=dtype,
      image_size=image_size,
    )
  )
  config.acb.impl = acb_impl
  validate_config(config)
  return config


def fresh_state(trainer: Trainer) -> train_steps.TrainState:
  """A copy of the initial state: the timed steps donate theirs."""
  return trainer.init_state()


def time_train_step(trainer: Trainer, steps: int, warmup: int) -> Timing:
  """The step as training runs it: host batch indices, on-device pipeline, update."""
  state = fresh_state(trainer)
  step, compile_s = compile_timed(trainer.train_step, state, trainer.train_inputs(0))

  def run(i: int) -> Any:
    nonlocal state
    state, metrics = step(state, trainer.train_inputs(i))
    return metrics

  step_s = median_time(successive_steps(run), steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), trainer.config.batch_size, xla_peak_bytes(step))


def ready_batch(trainer: Trainer) -> tuple[jax.Array, jax.Array]:
  """One train batch through the input pipeline, left on device."""
  return jax.jit(trainer.feed.prepare_train)(trainer.train_inputs(0), jnp.int32(0))


def update_on_ready_batch(
  trainer: Trainer,
) -> tuple[jax.stages.Compiled, float, Callable[[], Any]]:
  """The update compiled for one batch already prepared on device: (the
  compiled step, its compile seconds, run() that performs one update from the
  state the previous one left and returns its metrics)."""
  x, y = ready_batch(trainer)
  state = fresh_state(trainer)
  state_sharding = jax.tree.map(lambda _: trainer.replicated, state)
  update = jax.jit(
    functools.partial(train_steps.update, schedule=trainer.schedule, seed=trainer.config.seed),
    out_shardings=(state_sharding, trainer.replicated),
    donate_argnums=0,
  )
  step, compile_s = compile_timed(update, state, x, y)

  def run() -> Any:
    nonlocal state
    state, metrics = step(state, x, y)
    return metrics

  return step, compile_s, run


def time_update_on_ready_batch(trainer: Trainer, steps: int, warmup: int) -> Timing:
  """The same update fed by one batch already prepared on device."""
  step, compile_s, run = update_on_ready_batch(trainer)
  step_s = median_time(run, steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), trainer.config.batch_size, xla_peak_bytes(step))


def time_eval(model: Any, variables: dict, trainer: Trainer, steps: int, warmup: int) -> Timing:
  batch_size = trainer.config.eval_batch_size
  inputs, _ = next(trainer.feed.eval_inputs())
  x = jax.jit(
    lambda inputs: trainer.feed.prepare_eval(inputs)[0], out_shardings=trainer.batch_sharding
  )(inputs)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False), out_shardings=trainer.replicated)
  step, compile_s = compile_timed(forward, variables, x)
  step_s = median_time(lambda: step(variables, x), steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), batch_size, xla_peak_bytes(step))


def time_gradient_parts(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
  """Where a train step's time goes: the train-mode forward, then also the
  gradients with respect to the input only (the backward chain without any
  weight gradient), then also the weight gradients."""
  state, (x, _) = trainer.init_state(), ready_batch(trainer)

  def loss(params: Any, x: jax.Array) -> jax.Array:
    y, _ = trainer.model.apply(
      {'params': params, 'batch_stats': state.batch_stats}, x, train=True, mutable=['batch_stats']
    )
    return jnp.sum(y**2)

  parts = {
    'forward': loss,
    'input_gradients': jax.grad(lambda p, x: loss(jax.lax.stop_gradient(p), x), 1),
    'all_gradients': jax.grad(loss, (0, 1)),
  }
  out = {}
  for name in GRADIENT_PARTS:
    compiled, _ = compile_timed(jax.jit(parts[name]), state.params, x)
    out[f'{name}_s'] = median_time(lambda: compiled(state.params, x), steps, warmup)
    out[f'{name}_flops'] = xla_flops(compiled)
  return out


def profile_train_step(trainer: Trainer, steps: int, warmup: int) -> dict[str, float]:
  """Seconds per step of each kind of op of the train step (`profile`)."""
  state = fresh_state(trainer)
  step = trainer.train_step.lower(state, trainer.train_inputs(0)).compile()

  def run() -> Any:
    nonlocal state
    state, metrics = step(state, trainer.train_inputs(0))
    return metrics

  per_device_batch = trainer.config.batch_size // trainer.mesh.devices.size
  return profile.profile(step, run, steps, per_device_batch, warmup)


def run_benchmark(
  model: str,
  convs: Sequence[str],
  acb_impls: Sequence[str],
  batch_size: int,
  eval_batch_size: int,
  devices: Sequence[jax.Device],
  steps: int,
  warmup: int,
  train_examples: int,
  matmul_size: int,
  breakdown: bool = False,
  progress: Callable[[str], None] = logging.info,
  image_size: int = 32,
  dtypes: Sequence[str] = ('float32',),
  profiled: bool = False,
) -> dict[str, Any]:
  """Every measurement of the module docstring, as one JSON-able report."""
  for conv in convs:
    parse_conv(conv)  # Before any work.
  progress(f'timing the peak: {matmul_size}x{matmul_size} float32 matmul')
  peak = measure_peak(devices[0], matmul_size)
  train_examples = train_examples or (
    50_000 if image_size <= 32 else batch_size * (steps + warmup + 2)
  )
  mesh = Mesh(np.array(devices), (DATA_AXIS,))
  variants = [
    (dtype, conv, impl)
    for dtype in dtypes
    for conv in convs
    for impl in (acb_impls if conv == 'acnet' else ['-'])
  ]
  report: dict[str, Any] = {
    'environment': environment(
      model, devices, batch_size, eval_batch_size, steps, warmup, image_size
    ),
    'peak_flops_per_s': peak,
    'train': [],
    'eval': [],
    'devices': [],
    'breakdown': [],
    'profile': {},
  }
  # Ratios, the breakdown and the device comparison are of the first dtype.
  train_timings: dict[tuple[str, str], Timing] = {}
  eval_timings: dict[tuple[str, str], Timing] = {}
  for dtype, conv, impl in variants:
    first_dtype = dtype == dtypes[0]
    config = bench_config(
      model,
      conv,
      impl if conv == 'acnet' else ACB_IMPLS[0],
      batch_size,
      eval_batch_size,
      train_examples,
      dtype,
      image_size,
    )
    trainer = Trainer(config, mesh)
    progress(f'timing the train step: {conv} {impl} {dtype}')
    full = time_train_step(trainer, steps, warmup)
    ready = time_update_on_ready_batch(trainer, steps, warmup)
    report['train'].append(full.row(peak, conv=conv, acb_impl=impl, dtype=dtype, feed='pipeline'))
    report['train'][-1]['pipeline_overhead'] = 1 - ready.step_s / full.step_s
    report['train'].append(ready.row(peak, conv=conv, acb_impl=impl, dtype=dtype, feed='on_device'))
    progress(f'timing eval: {conv} {impl} {dtype}')
    state = trainer.init_state()
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    timing = time_eval(trainer.model, variables, trainer, steps, warmup)
    report['eval'].append(timing.row(peak, conv=conv, acb_impl=impl, dtype=dtype))
    if conv != 'normal' and not any(
      r['conv'] == 'deploy' and r['dtype'] == dtype for r in report['eval']
    ):
      params, stats = trainer.fuse(state.params, state.batch_stats)
      deploy = time_eval(
        trainer.deploy_model, {'params': params, 'batch_stats': stats}, trainer, steps, warmup
      )
      report['eval'].append(deploy.row(peak, conv='deploy', acb_impl='-', dtype=dtype))
      if first_dtype:
        eval_timings['deploy', '-'] = deploy
    if not first_dtype:
      continue
    train_timings[conv, impl] = full
    eval_timings[conv, impl] = timing

    if profiled:
      progress(f'profiling the train step: {conv} {impl}')
      label = conv if impl == '-' else f'{conv} {impl}'
      report['profile'][label] = profile_train_step(trainer, steps, warmup)

    if breakdown:
      progress(f'timing the parts of the step: {conv} {impl}')
      report['breakdown'].append(
        {'conv': conv, 'acb_impl': impl, **time_gradient_parts(trainer, steps, warmup)}
      )

    if len(devices) > 1 and impl in ('-', ACB_IMPLS[0]):
      progress(f'timing the train step on 1 device: {conv}')
      one = Trainer(config, Mesh(np.array(devices[:1]), (DATA_AXIS,)))
      for n, timing in ((1, time_train_step(one, steps, warmup)), (len(devices), full)):
        report['devices'].append(
          {
            'conv': conv,
            'acb_impl': impl,
            'num_devices': n,
            'step_s': timing.step_s,
            'images_per_s': timing.images_per_s,
          }
        )

  report['ratios'] = ratios(train_timings, eval_timings)
  return report


def environment(
  model: str,
  devices: Sequence[jax.Device],
  batch_size: int,
  eval_batch_size: int,
  steps: int,
  warmup: int,
  image_size: int = 32,
) -> dict[str, Any]:
  return {
    'model': model,
    'image_size': image_size,
    'backend': devices[0].platform,
    'device_kind': devices[0].device_kind,
    'num_devices': len(devices),
    'batch_size': batch_size,
    'eval_batch_size': eval_batch_size,
    'steps': steps,
    'warmup': warmup,
    'jax': jax.__version__,
    'cpu': platform.processor() or platform.machine(),
    'cpu_count': os.cpu_count(),
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }
