"""Why ACNet works, measured on trained runs (the paper's Sec. 4.3-4.4).

Each run's newest checkpoint is fused with `fuse_params`; then, on its test
split:
  - kernel magnitudes: mean |w| at each KxK position of every fused kernel,
    normalised by the layer's largest position, averaged over layers;
  - pruning: top-1 with the corners, the skeleton or (5x5 and larger) the
    border of every fused KxK kernel zeroed;
  - robustness: top-1 on the images as they are, flipped left-right or
    up-down, rotated by 90 and 180 degrees;
  - int8 rounding: per region of the fused KxK kernels, how many steps of
    per-channel int8 the weights span and what rounding costs them
    (`int8_rounding`).
`analyze` writes report.json (every number), tables.md and three PNG figures.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import tqdm
from absl import logging
from matplotlib.figure import Figure

from acnet_jax.analysis import int8_rounding, plots, skeleton
from acnet_jax.data import feeds
from acnet_jax.errors import InputError
from acnet_jax.training.config import validate_config
from acnet_jax.training.trainer import Trainer, create_mesh, to_host
from acnet_jax.training.workdir import restore_trained, run_config, trained_checkpoints
from acnet_jax.training.write_failures import reported_as_one_paragraph

# Test-time transforms of a normalised NHWC batch.
TRANSFORMS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'original': lambda x: x,
  'flip_lr': lambda x: x[:, :, ::-1],
  'flip_ud': lambda x: x[:, ::-1],
  'rot90': lambda x: jnp.rot90(x, 1, axes=(1, 2)),
  'rot180': lambda x: jnp.rot90(x, 2, axes=(1, 2)),
}
UNPRUNED = 'none'


def count_correct(
  model: nn.Module, variables: dict, x: jax.Array, y: jax.Array, mask: jax.Array
) -> jax.Array:
  """Correct top-1 predictions among the unmasked examples of a batch."""
  logits = model.apply(variables, x, train=False)
  return jnp.sum((jnp.argmax(logits, -1) == y) * mask)


@dataclasses.dataclass(frozen=True)
class Counters:
  """The compiled steps of one run's analysis."""

  prepare: Callable[[feeds.Inputs], tuple[jax.Array, jax.Array]]
  trained: Callable[..., jax.Array]  # count_correct of the trained model
  deploy: Callable[..., jax.Array]  # count_correct of the deploy model

  @classmethod
  def of(cls, trainer: Trainer) -> Counters:
    return cls(
      jax.jit(trainer.feed.prepare_eval),
      jax.jit(functools.partial(count_correct, trainer.model)),
      jax.jit(functools.partial(count_correct, trainer.deploy_model)),
    )


def batch_counts(
  counters: Counters,
  variables: dict,
  pruned: dict[str, Any],
  deploy_stats: Any,
  inputs: feeds.Inputs,
  mask: jax.Array,
) -> dict[str, jax.Array]:
  """Correct top-1 predictions in one eval batch: of the trained model, and of
  the deploy model under every pruning (`pruned`: region -> params) and, with
  its unpruned params, under every transform. One compiled forward pass per
  model serves every variant (same shapes), not one program holding them all."""
  x, y = counters.prepare(inputs)
  if x.shape[1] != x.shape[2]:
    raise InputError(f'rotations need square eval images; these are {x.shape[1]}x{x.shape[2]}')
  counts = {'num_examples': jnp.sum(mask), 'trained': counters.trained(variables, x, y, mask)}
  for region, params in pruned.items():
    counts[f'pruning/{region}'] = counters.deploy(
      {'params': params, 'batch_stats': deploy_stats}, x, y, mask
    )
  unpruned = {'params': pruned[UNPRUNED], 'batch_stats': deploy_stats}
  for name, transform in TRANSFORMS.items():
    counts[f'robustness/{name}'] = (
      counts[f'pruning/{UNPRUNED}']
      if name == 'original'
      else counters.deploy(unpruned, transform(x), y, mask)
    )
  return counts


def analyze_run(workdir: str, label: str, data_dir: str | None = None) -> dict[str, Any]:
  """Every number of one run: kernel magnitudes, pruning and robustness top-1."""
  config = run_config(workdir)
  if data_dir:
    config.data_dir = data_dir
  validate_config(config)
  manager = trained_checkpoints(config, workdir)
  trainer = Trainer(config, create_mesh())
  state = restore_trained(manager, trainer.abstract_state, config)
  params, stats = trainer.fuse(state.params, state.batch_stats)
  pruned = {
    UNPRUNED: params,
    **{region: skeleton.prune(params, region) for region in skeleton.regions_for(params)},
  }
  counters = Counters.of(trainer)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  totals: dict[str, float] = {}
  num_batches = -(-trainer.feed.num_eval // config.eval_batch_size)
  for inputs, mask in tqdm.tqdm(
    trainer.feed.eval_inputs(), desc=f'{label}: test batches', unit='batch', total=num_batches
  ):
    counts = batch_counts(counters, variables, pruned, stats, inputs, mask)
    for key, value in to_host(counts).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  n = totals.pop('num_examples')
  top1 = {key: value / n for key, value in totals.items()}
  kernels = skeleton.square_kernels(params)
  return {
    'label': label,
    'workdir': workdir,
    'model': config.model,
    'conv': config.conv,
    'acb': config.acb.to_dict(),
    'seed': config.seed,
    'step': int(state.step),
    'num_examples': int(n),
    'trained_top1': top1.pop('trained'),
    'kernel_magnitudes': {
      str(k): {
        'average': matrix.tolist(),
        'num_layers': sum(w.shape[0] == k for w in kernels.values()),
      }
      for k, matrix in skeleton.average_magnitudes(params).items()
    },
    'layer_magnitudes': {
      path: skeleton.position_magnitudes(w).tolist() for path, w in kernels.items()
    },
    'pruning': {region: top1[f'pruning/{region}'] for region in pruned},
    'robustness': {name: top1[f'robustness/{name}'] for name in TRANSFORMS},
    'int8_rounding': int8_rounding.model_rounding(to_host(params)),
  }


def markdown_tables(runs: Sequence[dict[str, Any]]) -> str:
  """Test top-1 (%) per run: pruning and robustness, as Markdown."""

  def table(title: str, key: str) -> str:
    columns = list(dict.fromkeys(c for run in runs for c in run[key]))
    lines = [f'{title}\n', '| run | ' + ' | '.join(columns) + ' |', '|---|' + '---|' * len(columns)]
    for run in runs:
      cells = [f'{100 * run[key][c]:.2f}' if c in run[key] else '-' for c in columns]
      lines.append(f'| {run["label"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)

  return (
    '\n\n'.join(
      [
        table('Test top-1 (%) with a region of every fused KxK kernel zeroed', 'pruning'),
        table('Test top-1 (%) on transformed test images', 'robustness'),
        rounding_table(runs),
      ]
    )
    + '\n'
  )


def rounding_table(runs: Sequence[dict[str, Any]]) -> str:
  """Per run and region, the mean over layers of int8 steps and rounding error."""
  regions = list(dict.fromkeys(r for run in runs for r in run['int8_rounding']['mean']))
  lines = [
    'Per-channel int8 of the fused KxK kernels, mean over layers: mean |w| in int8 '
    'steps / relative rounding error (%)\n',
    '| run | ' + ' | '.join(regions) + ' |',
    '|---|' + '---|' * len(regions),
  ]
  for run in runs:
    mean = run['int8_rounding']['mean']
    cells = [
      f'{mean[r]["levels"]:.1f} / {100 * mean[r]["relative_error"]:.2f}' if r in mean else '-'
      for r in regions
    ]
    lines.append(f'| {run["label"]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def unique_labels(workdirs: Sequence[str], labels: Sequence[str] | None) -> list[str]:
  if labels:
    if len(labels) != len(workdirs):
      raise InputError(f'{len(labels)} labels for {len(workdirs)} workdirs: give one per workdir')
    chosen = list(labels)
  else:
    chosen = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    if len(set(chosen)) < len(chosen):
      chosen = [os.path.normpath(w) for w in workdirs]
  if len(set(chosen)) < len(chosen):
    raise InputError(f'the runs need distinct labels; got {chosen}')
  return chosen


def analyze(
  workdirs: Sequence[str],
  output: str,
  labels: Sequence[str] | None = None,
  data_dir: str | None = None,
) -> dict[str, Any]:
  """Analyses every run and writes OUT/report.json, tables.md and the figures."""
  if not workdirs:
    raise InputError('give at least one --workdir of a trained run')
  for workdir in workdirs:
    if not os.path.isdir(workdir):
      raise InputError(f'--workdir {workdir} is not a folder')
  chosen = unique_labels(workdirs, labels)
  runs = [analyze_run(w, label, data_dir) for w, label in zip(workdirs, chosen)]
  report = {'runs': runs}
  tables = markdown_tables(runs)
  with reported_as_one_paragraph(output):
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, 'report.json'), 'w') as f:
      json.dump(report, f, indent=1)
    with open(os.path.join(output, 'tables.md'), 'w') as f:
      f.write(tables)
    draw_figures(runs, output)
  logging.info('Wrote %s:\n%s', output, tables)
  return report


def draw_figures(runs: Sequence[dict[str, Any]], output: str) -> dict[str, Figure]:
  """The three PNG figures of the report, by file name."""
  percent = lambda key: {run['label']: {c: 100 * v for c, v in run[key].items()} for run in runs}
  return {
    'kernel_magnitudes.png': plots.magnitude_heatmaps(
      runs, os.path.join(output, 'kernel_magnitudes.png')
    ),
    'pruning.png': plots.grouped_bars(
      percent('pruning'),
      'Zeroing a region of every fused KxK kernel',
      'test top-1 (%)',
      os.path.join(output, 'pruning.png'),
    ),
    'robustness.png': plots.grouped_bars(
      percent('robustness'),
      'Transformed test images',
      'test top-1 (%)',
      os.path.join(output, 'robustness.png'),
    ),
  }
