"""Numbers, not tests: python -m acnet_jax.benchmark [--model=rc56 --batch_size=64 ...]

After compilation and warm-up, the median time of several steps of
  train    the jitted train step of each conv kind (--convs: `normal`,
           `acnet` in each ACB impl, `dbb`, `repvgg`), fed by the on-device
           input pipeline (gather, augment, normalise) and by a batch already
           on device;
  eval     the forward pass of each kind (unfused) and of the fused `deploy`
           model;
  devices  the train step on 1 device and on all N, when N > 1;
  parts    (--breakdown) forward, + input gradients, + weight gradients;
with each step's compile time, XLA's FLOP count (per device: the partitioned
program's) and the achieved FLOP/s as a fraction of a float32 matmul timed in
the same run. Prints a table, writes JSON.
Synthetic CIFAR-shaped uint8 data: the step's work does not depend on pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from jax.sharding import Mesh

from acnet_jax import input_pipeline, pipeline_benchmark, presets, train
from acnet_jax.errors import InputError
from acnet_jax.layers import ACB_IMPLS

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'rc56', 'Model name, e.g. rc56, cfqkbnc, wrnc16.')
flags.DEFINE_list('convs', ['normal', 'acnet'], 'Conv kinds to train: normal, acnet, dbb, '
                  'repvgg.')
flags.DEFINE_list('acb_impls', list(ACB_IMPLS), 'ACB computations to time for acnet.')
flags.DEFINE_integer('batch_size', 64, 'Global train batch size.')
flags.DEFINE_integer('eval_batch_size', 500, 'Global eval batch size.')
flags.DEFINE_integer('num_devices', 0, 'Devices of the mesh; 0 = all of the backend.')
flags.DEFINE_string('backend', None, "jax backend ('cpu', 'gpu', 'tpu'); default: jax's.")
flags.DEFINE_integer('steps', 5, 'Timed steps per measurement (their median is reported).')
flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
flags.DEFINE_integer('train_examples', 0, 'Size of the synthetic train split on device; '
                     '0 = 50,000 at 32 px, else enough for the timed steps.')
flags.DEFINE_integer('image_size', 32, 'Side of the synthetic images, e.g. 224 for ImageNet models.')
flags.DEFINE_list('dtypes', ['float32'], 'Compute dtypes to train and evaluate in: float32, '
                  'bfloat16 (ratios and devices use the first).')
flags.DEFINE_bool('pipeline', False, 'Time the streaming input pipeline on --data_dir instead: '
                  'decoded+augmented images/s per core, and with --model the share of a '
                  'streamed train step spent waiting for data.')
flags.DEFINE_string('data_dir', None, 'With --pipeline: an image folder (train/<class>/*).')
flags.DEFINE_list('num_workers', ['1', '2'], 'With --pipeline: decoding threads to try.')
flags.DEFINE_integer('matmul_size', 0, 'Side of the square matmul that measures the peak; '
                     '0 = 2048 on CPU, 8192 elsewhere.')
flags.DEFINE_bool('breakdown', False, 'Also time the forward, input-gradient and '
                  'weight-gradient parts of each train step.')
flags.DEFINE_string('output', 'benchmark.json', 'Where to write the JSON report.')


@dataclasses.dataclass(frozen=True)
class Timing:
  compile_s: float
  step_s: float  # Median over the timed steps.
  flops: float  # Per step, from XLA's cost analysis of the compiled step.
  batch_size: int

  @property
  def images_per_s(self) -> float:
    return self.batch_size / self.step_s

  def row(self, peak_flops_per_s: float, **labels: Any) -> dict[str, Any]:
    flops_per_s = self.flops / self.step_s
    return {**labels, 'compile_s': self.compile_s, 'step_s': self.step_s,
            'images_per_s': self.images_per_s, 'flops': self.flops,
            'flops_per_s': flops_per_s, 'fraction_of_peak': flops_per_s / peak_flops_per_s}


def xla_flops(compiled: jax.stages.Compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, Sequence):  # One entry per program in older jax versions.
    cost = cost[0]
  return float(cost.get('flops', float('nan')))


def compile_timed(jitted: Callable, *args: Any) -> tuple[jax.stages.Compiled, float]:
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def step_times(run: Callable[[int], Any], steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` timed calls run(i) after `warmup` untimed ones;
  run(i) performs step i and returns its outputs, and each step is waited for."""
  for i in range(warmup):
    jax.block_until_ready(run(i))
  times = []
  for i in range(warmup, warmup + steps):
    start = time.perf_counter()
    jax.block_until_ready(run(i))
    times.append(time.perf_counter() - start)
  return times


def median_step_time(run: Callable[[int], Any], steps: int, warmup: int) -> float:
  return statistics.median(step_times(run, steps, warmup))


def measure_peak(device: jax.Device, size: int, repeats: int = 10) -> float:
  """FLOP/s of a large float32 matmul: what this device attains on dense math.
  The fastest of several runs, since 'attainable' is a best case."""
  a = jax.device_put(jnp.asarray(np.random.default_rng(0).standard_normal((size, size)),
                                 jnp.float32), device)
  matmul, _ = compile_timed(jax.jit(lambda a: a @ a), a)
  return 2 * size**3 / min(step_times(lambda _: matmul(a), repeats, warmup=1))


def bench_config(model: str, conv: str, acb_impl: str, batch_size: int, eval_batch_size: int,
                 train_examples: int, dtype: str = 'float32') -> ml_collections.ConfigDict:
  config = presets.get_config()
  config.update(dict(model=model, conv=conv, batch_size=batch_size,
                     eval_batch_size=eval_batch_size, dataset='synthetic',
                     synthetic_examples=train_examples, dtype=dtype))
  config.acb.impl = acb_impl
  train.validate_config(config)
  return config


def fresh_state(trainer: train.Trainer) -> train.TrainState:
  """A copy of the initial state: the timed steps donate theirs."""
  return jax.tree.map(lambda x: x.copy(), trainer.initial_state)


def time_train_step(trainer: train.Trainer, steps: int, warmup: int) -> Timing:
  """The step as training runs it: host batch indices, on-device pipeline, update."""
  state = fresh_state(trainer)
  step, compile_s = compile_timed(trainer.train_step, state, trainer.train_inputs(0))

  def run(i: int) -> Any:
    nonlocal state
    state, metrics = step(state, trainer.train_inputs(i))
    return metrics

  step_s = median_step_time(run, steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), trainer.config.batch_size)


def ready_batch(trainer: train.Trainer) -> tuple[jax.Array, jax.Array]:
  """One train batch through the input pipeline, left on device."""
  return jax.jit(trainer.feed.prepare_train)(trainer.train_inputs(0), jnp.int32(0))


def time_update_on_ready_batch(trainer: train.Trainer, steps: int, warmup: int) -> Timing:
  """The same update fed by one batch already prepared on device."""
  x, y = ready_batch(trainer)
  state = fresh_state(trainer)
  state_sharding = jax.tree.map(lambda _: trainer.replicated, state)
  update = jax.jit(functools.partial(train.update, schedule=trainer.schedule,
                                     seed=trainer.config.seed),
                   out_shardings=(state_sharding, trainer.replicated), donate_argnums=0)
  step, compile_s = compile_timed(update, state, x, y)

  def run(_: int) -> Any:
    nonlocal state
    state, metrics = step(state, x, y)
    return metrics

  step_s = median_step_time(run, steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), trainer.config.batch_size)


def time_eval(model: Any, variables: dict, trainer: train.Trainer, steps: int,
              warmup: int) -> Timing:
  batch_size = trainer.config.eval_batch_size
  inputs, _ = next(trainer.feed.eval_inputs())
  x = jax.jit(lambda inputs: trainer.feed.prepare_eval(inputs)[0],
              out_shardings=trainer.batch_sharding)(inputs)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False),
                    out_shardings=trainer.replicated)
  step, compile_s = compile_timed(forward, variables, x)
  step_s = median_step_time(lambda _: step(variables, x), steps, warmup)
  return Timing(compile_s, step_s, xla_flops(step), batch_size)


GRADIENT_PARTS = ('forward', 'input_gradients', 'all_gradients')


def time_gradient_parts(trainer: train.Trainer, steps: int, warmup: int) -> dict[str, float]:
  """Where a train step's time goes: the train-mode forward, then also the
  gradients with respect to the input only (the backward chain without any
  weight gradient), then also the weight gradients."""
  state, (x, _) = trainer.initial_state, ready_batch(trainer)

  def loss(params: Any, x: jax.Array) -> jax.Array:
    y, _ = trainer.model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                               train=True, mutable=['batch_stats'])
    return jnp.sum(y ** 2)

  parts = {'forward': loss,
           'input_gradients': jax.grad(lambda p, x: loss(jax.lax.stop_gradient(p), x), 1),
           'all_gradients': jax.grad(loss, (0, 1))}
  out = {}
  for name in GRADIENT_PARTS:
    compiled, _ = compile_timed(jax.jit(parts[name]), state.params, x)
    out[f'{name}_s'] = median_step_time(lambda _: compiled(state.params, x), steps, warmup)
    out[f'{name}_flops'] = xla_flops(compiled)
  return out


def run_benchmark(model: str, convs: Sequence[str], acb_impls: Sequence[str], batch_size: int,
                  eval_batch_size: int, devices: Sequence[jax.Device], steps: int, warmup: int,
                  train_examples: int, matmul_size: int, breakdown: bool = False,
                  progress: Callable[[str], None] = logging.info, image_size: int = 32,
                  dtypes: Sequence[str] = ('float32',)) -> dict[str, Any]:
  """Every measurement of the module docstring, as one JSON-able report."""
  progress(f'timing the peak: {matmul_size}x{matmul_size} float32 matmul')
  peak = measure_peak(devices[0], matmul_size)
  train_examples = train_examples or (
      50_000 if image_size <= 32 else batch_size * (steps + warmup + 2))
  dataset = input_pipeline.synthetic_dataset(
      presets.get_config().num_classes, train_examples, seed=0, image_size=image_size)
  mesh = Mesh(np.array(devices), (train.DATA_AXIS,))
  variants = [(dtype, conv, impl) for dtype in dtypes for conv in convs
              for impl in (acb_impls if conv == 'acnet' else ['-'])]
  report: dict[str, Any] = {
      'environment': environment(model, devices, batch_size, eval_batch_size, steps, warmup,
                                 image_size),
      'peak_flops_per_s': peak, 'train': [], 'eval': [], 'devices': [], 'breakdown': []}
  # Ratios, the breakdown and the device comparison are of the first dtype.
  train_timings: dict[tuple[str, str], Timing] = {}
  eval_timings: dict[tuple[str, str], Timing] = {}
  for dtype, conv, impl in variants:
    first_dtype = dtype == dtypes[0]
    config = bench_config(model, conv, impl if conv == 'acnet' else ACB_IMPLS[0], batch_size,
                          eval_batch_size, train_examples, dtype)
    trainer = train.Trainer(config, mesh, dataset)
    progress(f'timing the train step: {conv} {impl} {dtype}')
    full = time_train_step(trainer, steps, warmup)
    ready = time_update_on_ready_batch(trainer, steps, warmup)
    report['train'].append(full.row(peak, conv=conv, acb_impl=impl, dtype=dtype, feed='pipeline'))
    report['train'][-1]['pipeline_overhead'] = 1 - ready.step_s / full.step_s
    report['train'].append(ready.row(peak, conv=conv, acb_impl=impl, dtype=dtype,
                                     feed='on_device'))
    progress(f'timing eval: {conv} {impl} {dtype}')
    state = trainer.initial_state
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    timing = time_eval(trainer.model, variables, trainer, steps, warmup)
    report['eval'].append(timing.row(peak, conv=conv, acb_impl=impl, dtype=dtype))
    if conv != 'normal' and not any(r['conv'] == 'deploy' and r['dtype'] == dtype
                                    for r in report['eval']):
      params, stats = trainer.fuse(state.params, state.batch_stats)
      deploy = time_eval(trainer.deploy_model, {'params': params, 'batch_stats': stats}, trainer,
                         steps, warmup)
      report['eval'].append(deploy.row(peak, conv='deploy', acb_impl='-', dtype=dtype))
      if first_dtype:
        eval_timings['deploy', '-'] = deploy
    if not first_dtype:
      continue
    train_timings[conv, impl] = full
    eval_timings[conv, impl] = timing

    if breakdown:
      progress(f'timing the parts of the step: {conv} {impl}')
      report['breakdown'].append(
          {'conv': conv, 'acb_impl': impl, **time_gradient_parts(trainer, steps, warmup)})


    if len(devices) > 1 and impl in ('-', ACB_IMPLS[0]):
      progress(f'timing the train step on 1 device: {conv}')
      one = train.Trainer(config, Mesh(np.array(devices[:1]), (train.DATA_AXIS,)), dataset)
      for n, timing in ((1, time_train_step(one, steps, warmup)), (len(devices), full)):
        report['devices'].append({'conv': conv, 'acb_impl': impl, 'num_devices': n,
                                  'step_s': timing.step_s, 'images_per_s': timing.images_per_s})

  report['ratios'] = ratios(train_timings, eval_timings)
  return report


def ratios(train_timings: dict[tuple[str, str], Timing],
           eval_timings: dict[tuple[str, str], Timing]) -> dict[str, float]:
  """Each training-time kind's train-step time relative to normal, next to its
  FLOPs ratio (XLA's count of the first computation: for acnet 'branches', the
  work an ACB needs), and deploy eval throughput relative to normal and to
  each unfused kind. Keys name the kind and, for acnet, the impl."""
  out: dict[str, float] = {}
  label = lambda conv, impl: conv if impl == '-' else f'{conv}_{impl}'
  normal = train_timings.get(('normal', '-'))
  for (conv, impl), timing in train_timings.items():
    if conv != 'normal' and normal:
      out[f'train_time_{label(conv, impl)}/normal'] = timing.step_s / normal.step_s
      if f'train_flops_{conv}/normal' not in out:
        out[f'train_flops_{conv}/normal'] = timing.flops / normal.flops
  deploy = eval_timings.get(('deploy', '-'))
  if deploy:
    for (conv, impl), timing in eval_timings.items():
      if conv != 'deploy':
        out[f'eval_throughput_deploy/{label(conv, impl)}'] = (
            deploy.images_per_s / timing.images_per_s)
  return out


def environment(model: str, devices: Sequence[jax.Device], batch_size: int,
                eval_batch_size: int, steps: int, warmup: int,
                image_size: int = 32) -> dict[str, Any]:
  return {'model': model, 'image_size': image_size, 'backend': devices[0].platform,
          'device_kind': devices[0].device_kind,
          'num_devices': len(devices), 'batch_size': batch_size,
          'eval_batch_size': eval_batch_size, 'steps': steps, 'warmup': warmup,
          'jax': jax.__version__, 'cpu': platform.processor() or platform.machine(),
          'cpu_count': os.cpu_count(), 'xla_flags': os.environ.get('XLA_FLAGS', '')}


def format_report(report: dict[str, Any]) -> str:
  env = report['environment']
  lines = [f"{env['model']} at {env['image_size']} px on {env['num_devices']} x "
           f"{env['device_kind']} ({env['backend']}), "
           f"train batch {env['batch_size']}, eval batch {env['eval_batch_size']}, "
           f"median of {env['steps']} steps; XLA_FLAGS={env['xla_flags'] or '(none)'}",
           f"peak (float32 matmul): {report['peak_flops_per_s'] / 1e9:.1f} GFLOP/s", '',
           f"{'':6}{'conv':8}{'acb_impl':10}{'dtype':10}{'feed':11}{'img/s':>9}{'step ms':>10}"
           f"{'compile s':>11}{'GFLOP/s':>9}{'of peak':>9}{'pipeline':>10}"]
  for section in ('train', 'eval'):
    for row in report[section]:
      overhead = row.get('pipeline_overhead')
      lines.append(
          f"{section:6}{row['conv']:8}{row['acb_impl']:10}{row['dtype']:10}{row.get('feed', ''):11}"
          f"{row['images_per_s']:9.1f}{row['step_s'] * 1e3:10.1f}{row['compile_s']:11.1f}"
          f"{row['flops_per_s'] / 1e9:9.1f}{row['fraction_of_peak']:9.1%}"
          f"{'' if overhead is None else f'{overhead:10.1%}'}")
  if report['breakdown']:
    lines.append('')
  for row in report['breakdown']:
    times = [0.0] + [row[f'{name}_s'] for name in GRADIENT_PARTS]
    flops = [0.0] + [row[f'{name}_flops'] for name in GRADIENT_PARTS]
    parts = [f'{label} {(times[i + 1] - times[i]) * 1e3:.0f} ms '
             f'({(flops[i + 1] - flops[i]) / (times[i + 1] - times[i]) / 1e9:.0f} GFLOP/s)'
             for i, label in enumerate(('forward', '+ input grads', '+ weight grads'))]
    lines.append(f"parts {row['conv']:8}{row['acb_impl']:10}" + ', '.join(parts))
  if report['devices']:
    lines.append('')
    for row in report['devices']:
      lines.append(f"devices {row['num_devices']:2}  {row['conv']:8}{row['acb_impl']:10}"
                   f"{row['images_per_s']:9.1f} img/s")
  lines.append('')
  lines += [f'{name:40}{value:8.3f}' for name, value in report['ratios'].items()]
  return '\n'.join(lines)


def time_streamed_training(model: str, data_dir: str, image_size: int, batch_size: int,
                           num_workers: int, devices: Sequence[jax.Device], steps: int,
                           warmup: int) -> dict[str, Any]:
  """The train step fed by the streaming pipeline as training runs it (at
  most two steps in flight): median step time and the share of the wall
  clock spent waiting for the next batch."""
  config = bench_config(model, 'normal', ACB_IMPLS[0], batch_size, batch_size, 0)
  config.update(dict(dataset='image_folder', data_dir=data_dir, pipeline='stream',
                     image_size=image_size, data_workers=num_workers, num_classes=len(
                         os.listdir(os.path.join(data_dir, 'train')))))
  trainer = train.Trainer(config, Mesh(np.array(devices), (train.DATA_AXIS,)))
  state = fresh_state(trainer)
  previous = None
  for i in range(warmup + 1):  # Compiles, starts the threads.
    state, previous = trainer.train_step(state, trainer.train_inputs(i))
  jax.block_until_ready(previous)
  waited, start = trainer.feed.wait_seconds, time.perf_counter()
  for i in range(warmup + 1, warmup + 1 + steps):
    state, metrics = trainer.train_step(state, trainer.train_inputs(i))
    jax.block_until_ready(previous)
    previous = metrics
  jax.block_until_ready(previous)
  seconds = time.perf_counter() - start
  return {'model': model, 'image_size': image_size, 'batch_size': batch_size,
          'num_workers': trainer.feed.workers, 'step_s': seconds / steps,
          'images_per_s': steps * batch_size / seconds,
          'data_wait_share': (trainer.feed.wait_seconds - waited) / seconds}


def pipeline_main(devices: Sequence[jax.Device]) -> None:
  """--pipeline: decode+augment throughput, then a streamed train step."""
  if not FLAGS.data_dir:
    raise app.UsageError('--pipeline needs --data_dir=FOLDER holding train/<class>/*')
  try:
    results = [pipeline_benchmark.run(FLAGS.data_dir, FLAGS.image_size, FLAGS.batch_size,
                                      int(workers), FLAGS.steps)
               for workers in FLAGS.num_workers]
    print(pipeline_benchmark.format_table(results))
    fed = time_streamed_training(FLAGS.model, FLAGS.data_dir, FLAGS.image_size,
                                 FLAGS.batch_size, int(FLAGS.num_workers[-1]), devices,
                                 FLAGS.steps, FLAGS.warmup)
  except InputError as e:
    raise app.UsageError(str(e)) from None
  print(f"\n{fed['model']} normal, train step fed by the stream ({fed['num_workers']} threads): "
        f"{fed['step_s'] * 1e3:.0f} ms/step, {fed['images_per_s']:.1f} img/s, waiting for data "
        f"{fed['data_wait_share']:.1%} of the time")
  with open(FLAGS.output, 'w') as f:
    json.dump({'pipeline': results, 'streamed_train_step': fed}, f, indent=1)
  print(f'\nwrote {FLAGS.output}')


def main(argv: Sequence[str]) -> None:
  del argv
  devices = jax.devices(FLAGS.backend) if FLAGS.backend else jax.devices()
  if FLAGS.num_devices:
    if FLAGS.num_devices > len(devices):
      raise app.UsageError(f'--num_devices={FLAGS.num_devices} but the backend has '
                           f'{len(devices)} devices')
    devices = devices[:FLAGS.num_devices]
  if FLAGS.pipeline:
    return pipeline_main(devices)
  matmul_size = FLAGS.matmul_size or (2048 if devices[0].platform == 'cpu' else 8192)
  try:
    report = run_benchmark(FLAGS.model, FLAGS.convs, FLAGS.acb_impls, FLAGS.batch_size,
                           FLAGS.eval_batch_size, devices, FLAGS.steps, FLAGS.warmup,
                           FLAGS.train_examples, matmul_size, FLAGS.breakdown, progress=print,
                           image_size=FLAGS.image_size, dtypes=FLAGS.dtypes)
  except InputError as e:
    raise app.UsageError(str(e)) from None
  print(format_report(report))
  with open(FLAGS.output, 'w') as f:
    json.dump(report, f, indent=1)
  print(f'\nwrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
