"""The figures of `python -m acnet_jax.analyze`, from its report (plain numbers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use('Agg')  # Files only: no display on a training host.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def magnitude_heatmaps(runs: Sequence[Mapping], path: str) -> Figure:
  """One heatmap per run (columns) and kernel size (rows): the layer-averaged
  normalised magnitude at each position, its value printed in the cell."""
  sizes = sorted({int(k) for run in runs for k in run['kernel_magnitudes']})
  fig, axes = plt.subplots(
    len(sizes), len(runs), squeeze=False, figsize=(2.6 * len(runs) + 0.8, 2.6 * len(sizes) + 0.4)
  )
  for row, k in enumerate(sizes):
    for col, run in enumerate(runs):
      ax = axes[row][col]
      ax.set_xticks([])
      ax.set_yticks([])
      entry = run['kernel_magnitudes'].get(str(k))
      if entry is None:
        ax.set_axis_off()
        continue
      matrix = np.asarray(entry['average'])
      image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap='viridis')
      for (i, j), value in np.ndenumerate(matrix):
        ax.text(
          j,
          i,
          f'{value:.2f}',
          ha='center',
          va='center',
          fontsize=8,
          color='black' if value > 0.6 else 'white',
        )
      ax.set_title(f'{run["label"]}\n{k}x{k}, {entry["num_layers"]} layers', fontsize=9)
  fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
  return save(fig, path)


def grouped_bars(
  values: Mapping[str, Mapping[str, float]], title: str, ylabel: str, path: str
) -> Figure:
  """values[run][category] as bars grouped by category, one colour per run."""
  labels = list(values)
  categories = list(dict.fromkeys(c for run in values.values() for c in run))
  width = 0.8 / len(labels)
  fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(categories) * max(1, len(labels) / 3), 3.6))
  for i, label in enumerate(labels):
    xs = np.arange(len(categories)) + (i - (len(labels) - 1) / 2) * width
    ys = [values[label].get(c, np.nan) for c in categories]
    ax.bar(xs, ys, width, label=label)
  ax.set_xticks(np.arange(len(categories)), categories)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  # Below the axes: inside, it would hide the bars.
  ax.legend(
    fontsize=8,
    ncol=min(len(labels), 5),
    loc='upper center',
    bbox_to_anchor=(0.5, -0.1),
    frameon=False,
  )
  return save(fig, path)


def save(fig: Figure, path: str) -> Figure:
  """Writes the PNG and frees pyplot's hold on the figure; returns it, so that
  what it shows can be read back (tests do)."""
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)
  return fig
