"""A campaign's results: the evidence of each finished run copied into a
results folder (its config.json, eval.json, metrics.jsonl and campaign.jsonl,
small files only), and from that folder alone the results file, the markdown
table and the test-accuracy curves, so anyone can regenerate them from the
repository without the runs' checkpoints.

    RESULTS/<run>/{config,eval}.json, metrics.jsonl, campaign.jsonl
    RESULTS/results.json   every run's numbers and each arm's mean and sd
    RESULTS/table.md       published vs here, per seed and mean +- sd
    RESULTS/curves.svg     test top-1 against epochs, every run (text: the same
                           evidence draws the same bytes, so it is committed)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use('Agg')  # Files only: no display on a training host.
import matplotlib.pyplot as plt

from acnet_jax.campaigns.plan import Plan
from acnet_jax.campaigns.runner import PROVENANCE_FILE, is_finished

EVIDENCE_FILES = ('config.json', 'eval.json', 'metrics.jsonl', PROVENANCE_FILE)


def copy_evidence(plan: Plan, root: str, results: str) -> list[str]:
  """Copies the evidence of every finished run under root into results;
  returns the names of the runs copied."""
  copied = []
  for run in plan.runs:
    workdir = os.path.join(root, run.name)
    if not is_finished(workdir):
      continue
    os.makedirs(os.path.join(results, run.name), exist_ok=True)
    for name in EVIDENCE_FILES:
      if os.path.isfile(os.path.join(workdir, name)):
        shutil.copyfile(os.path.join(workdir, name), os.path.join(results, run.name, name))
    copied.append(run.name)
  return copied


def read_jsonl(path: str) -> list[dict[str, Any]]:
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_curve(metrics: Sequence[Mapping[str, Any]], steps_per_epoch: float) -> list[list[float]]:
  """[epoch, test top-1 %] of every evaluation, in step order; a step logged
  twice (steps repeated after a crash between checkpoints) keeps its last value."""
  by_step = {entry['step']: entry['test_top1'] for entry in metrics if 'test_top1' in entry}
  return [[step / steps_per_epoch, 100 * top1] for step, top1 in sorted(by_step.items())]


def run_result(plan: Plan, results: str, name: str) -> dict[str, Any] | None:
  """A run's numbers from its evidence files, or None if it has none."""
  folder = os.path.join(results, name)
  if not os.path.isfile(os.path.join(folder, 'eval.json')):
    return None
  run = next(r for r in plan.runs if r.name == name)
  with open(os.path.join(folder, 'eval.json')) as f:
    evaluation = json.load(f)
  with open(os.path.join(folder, 'config.json')) as f:
    config = json.load(f)
  steps_per_epoch = evaluation['step'] / config['num_epochs']
  starts = read_jsonl(os.path.join(folder, PROVENANCE_FILE))
  return {
    'run': name,
    'arm': run.arm,
    'seed': run.seed,
    'trainer': run.trainer,
    'top1': 100 * evaluation['top1'],
    'fused_top1': 100 * evaluation['fused_top1'],
    'test_examples': evaluation['num_examples'],
    'steps': evaluation['step'],
    'epochs': config['num_epochs'],
    'commits': sorted({start['commit'] for start in starts if start.get('commit')}),
    'curve': test_curve(read_jsonl(os.path.join(folder, 'metrics.jsonl')), steps_per_epoch),
  }


def arm_summaries(plan: Plan, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Per arm: its runs' top-1 by seed, mean and sample sd (None below two
  runs), the largest |fused - trained|, and the published figure."""
  summaries = []
  for arm in plan.arms():
    runs = sorted((row for row in rows if row['arm'] == arm), key=lambda row: row['seed'])
    top1 = [row['top1'] for row in runs]
    summaries.append(
      {
        'arm': arm,
        'published': plan.published.get(arm),
        'by_seed': {str(row['seed']): row['top1'] for row in runs},
        'n': len(top1),
        'mean': statistics.mean(top1) if top1 else None,
        'sd': statistics.stdev(top1) if len(top1) > 1 else None,
        'max_fused_diff': max((abs(row['fused_top1'] - row['top1']) for row in runs), default=None),
      }
    )
  return summaries


def percent(value: float | None) -> str:
  return '–' if value is None or math.isnan(value) else f'{value:.2f}'


def mean_and_spread(summary: Mapping[str, Any]) -> str:
  if summary['mean'] is None:
    return '–'
  sd = '' if summary['sd'] is None else f' ± {summary["sd"]:.2f}'
  return f'{summary["mean"]:.2f}{sd} ({summary["n"]})'


def markdown_table(summaries: Sequence[Mapping[str, Any]]) -> str:
  """Published vs here: one row per arm, a column per seed, mean +- sd."""
  seeds = sorted({int(seed) for s in summaries for seed in s['by_seed']})
  header = [
    'arm',
    'published',
    *(f'seed {seed}' for seed in seeds),
    'mean ± sd (n)',
    'mean − published',
    'max \\|fused − trained\\|',
  ]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for s in summaries:
    gap = None if s['mean'] is None or s['published'] is None else s['mean'] - s['published']
    cells = [
      s['arm'],
      percent(s['published']),
      *(percent(s['by_seed'].get(str(seed))) for seed in seeds),
      mean_and_spread(s),
      '–' if gap is None else f'{gap:+.2f}',
      percent(s['max_fused_diff']),
    ]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_curves(plan: Plan, rows: Sequence[Mapping[str, Any]], path: str) -> None:
  """Test top-1 against epochs: a line per run, a colour per arm (the PyTorch
  reference runs dotted), the published figure of each arm dashed (once for
  arms that share it)."""
  # Text as text and ids salted by the plan, not the clock or the process:
  # a small file that a rerun reproduces byte for byte.
  with plt.rc_context({'svg.fonttype': 'none', 'svg.hashsalt': plan.name}):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = dict(zip(plan.arms(), plt.rcParams['axes.prop_cycle'].by_key()['color']))
    for row in rows:
      epochs, top1 = zip(*row['curve']) if row['curve'] else ((), ())
      ax.plot(
        epochs,
        top1,
        marker='.',
        color=colors[row['arm']],
        linestyle=':' if row['trainer'] == 'pytorch_reference' else '-',
        label=f'{row["arm"]}, seed {row["seed"]}',
      )
    shared: dict[float, list[str]] = {}
    for arm, published in plan.published.items():
      if arm in colors:
        shared.setdefault(published, []).append(arm)
    for published, arms in shared.items():
      ax.axhline(
        published,
        color=colors[arms[0]],
        linestyle='--',
        linewidth=1,
        label=f'{" / ".join(arms)}, published',
      )
    if plan.published:  # Room above the highest published line.
      ax.set_ylim(top=max(ax.get_ylim()[1], max(plan.published.values()) + 0.5))
    ax.set_xlabel('epoch')
    ax.set_ylabel('test top-1 (%)')
    ax.set_title(plan.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format='svg', metadata={'Date': None})
    plt.close(fig)


def summarize(plan: Plan, results: str) -> dict[str, Any]:
  """results.json, table.md and curves.svg from the evidence in results."""
  rows = [row for run in plan.runs if (row := run_result(plan, results, run.name))]
  summaries = arm_summaries(plan, rows)
  report = {
    'plan': plan.name,
    'published_source': plan.published_source,
    'arms': summaries,
    'runs': rows,
  }
  os.makedirs(results, exist_ok=True)
  with open(os.path.join(results, 'results.json'), 'w') as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(results, 'table.md'), 'w') as f:
    f.write(markdown_table(summaries))
  if rows:
    plot_curves(plan, rows, os.path.join(results, 'curves.svg'))
  return report
