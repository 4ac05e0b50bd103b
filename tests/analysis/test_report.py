"""The analyses of trained runs, checked against direct computations: the
report's numbers, the tables and what the figures draw."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acnet_jax import create_model, fuse_params
from acnet_jax.analysis import report as analysis
from acnet_jax.data import memory
from acnet_jax.data.on_device import normalize
from acnet_jax.errors import InputError
from acnet_jax.training.loop import train_and_evaluate
from acnet_jax.training.trainer import Trainer, create_mesh
from acnet_jax.training.workdir import restore_trained, run_config, trained_checkpoints
from tests.support.numerics import BLOCK_RTOL
from tests.support.runs import tiny_config

# A trained run analysed once for the module: too long for the fast tier.
pytestmark = pytest.mark.full

CORNERS = [(0, 0), (0, 4), (4, 0), (4, 4)]
SKELETON = [(2, j) for j in range(5)] + [(i, 2) for i in range(5) if i != 2]
RING = [(i, j) for i in range(5) for j in range(5) if i in (0, 4) or j in (0, 4)]


def tiny_pair_run(workdir, conv: str) -> None:
  """Cifar-quick (5x5 kernels, so every region applies) on 64 synthetic images."""
  train_and_evaluate(
    tiny_config(
      model='cfqkbnc', conv=conv, num_epochs=1, log_every_steps=2, lr_schedule='cosine', seed=3
    ),
    str(workdir),
  )


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  root = tmp_path_factory.mktemp('analyze')
  for conv in ('normal', 'acnet'):
    tiny_pair_run(root / conv, conv)
  out = root / 'out'
  result = analysis.analyze([str(root / 'normal'), str(root / 'acnet')], str(out))
  return root, out, result


def direct_deploy(run_dir):
  """The run's deploy model, variables and test split, built without `analysis`."""
  config = run_config(str(run_dir))
  trainer = Trainer(config, create_mesh())
  state = restore_trained(trained_checkpoints(config, str(run_dir)), trainer.abstract_state, config)
  params, stats = fuse_params(state.params, state.batch_stats)
  test = memory.load_split(config, memory.dataset_info(config), 'test')
  x = normalize(jnp.asarray(test.images), config.pixel_mean, config.pixel_std)
  return create_model('cfqkbnc', 'deploy'), params, stats, x, test.labels


def direct_numbers(run_dir) -> dict:
  """Pruning, robustness and magnitudes of a run, computed here with numpy masks."""
  model, params, stats, x, labels = direct_deploy(run_dir)

  def top1(p, images):
    logits = model.apply({'params': p, 'batch_stats': stats}, images, train=False)
    return float(np.mean(np.argmax(logits, -1) == labels))

  def zeroed(positions):
    mask = np.ones((5, 5, 1, 1), np.float32)
    for i, j in positions:
      mask[i, j] = 0.0
    return jax.tree_util.tree_map_with_path(
      lambda path, w: w * mask if path[-1].key == 'kernel' and w.ndim == 4 else w, params
    )

  kernels = [np.asarray(w) for w in jax.tree.leaves(params) if w.ndim == 4 and w.shape[0] == 5]
  per_layer = [np.abs(w).mean((2, 3)) / np.abs(w).mean((2, 3)).max() for w in kernels]
  # Mean |w| at the corners in steps of each output channel's int8 scale.
  corner_steps = [
    np.mean([np.abs(w[i, j]) / (np.abs(w).max((0, 1, 2)) / 127) for i, j in CORNERS])
    for w in kernels
  ]
  return {
    'pruning': {
      'none': top1(params, x),
      'corners': top1(zeroed(CORNERS), x),
      'skeleton': top1(zeroed(SKELETON), x),
      'border': top1(zeroed(RING), x),
    },
    'robustness': {
      'original': top1(params, x),
      'flip_lr': top1(params, x[:, :, ::-1]),
      'flip_ud': top1(params, x[:, ::-1]),
      'rot90': top1(params, np.rot90(x, 1, (1, 2))),
      'rot180': top1(params, x[:, ::-1, ::-1]),
    },
    'magnitudes': np.mean(per_layer, 0),
    'num_layers': len(kernels),
    'corner_steps': float(np.mean(corner_steps)),
  }


@pytest.fixture(scope='module')
def expected(report):
  root, _, _ = report
  return {conv: direct_numbers(root / conv) for conv in ('normal', 'acnet')}


def test_pruning_robustness_and_magnitudes_match_a_direct_computation(report, expected):
  _, _, result = report
  for run in result['runs']:
    want = expected[run['label']]
    assert run['pruning'] == pytest.approx(want['pruning'])
    assert run['robustness'] == pytest.approx(want['robustness'])
    # Float32 means of up to 2,048 magnitudes in another order: about sqrt(n) u
    # ~ 3e-6 apart (tests/support/numerics.py).
    np.testing.assert_allclose(
      run['kernel_magnitudes']['5']['average'], want['magnitudes'], rtol=BLOCK_RTOL
    )
    assert run['kernel_magnitudes']['5']['num_layers'] == want['num_layers'] == 3
    rounding = run['int8_rounding']
    assert len(rounding['layers']) == 3
    assert rounding['mean']['corners']['levels'] == pytest.approx(
      want['corner_steps'], rel=BLOCK_RTOL
    )


def test_the_trained_model_scores_as_its_deploy_model_and_as_eval_json(report):
  root, _, result = report
  for run in result['runs']:
    evaluated = json.loads((root / run['label'] / 'eval.json').read_text())
    assert run['trained_top1'] == pytest.approx(evaluated['top1'])
    assert run['pruning']['none'] == pytest.approx(evaluated['fused_top1'])


def test_the_tables_and_figures_show_the_reports_numbers(report, expected, tmp_path):
  _, out, result = report
  tables = (out / 'tables.md').read_text()
  for run in result['runs']:
    cells = ' | '.join(f'{100 * v:.2f}' for v in expected[run['label']]['pruning'].values())
    assert f'| {run["label"]} | {cells} |' in tables
    corners = run['int8_rounding']['mean']['corners']
    assert f'{corners["levels"]:.1f} / {100 * corners["relative_error"]:.2f}' in tables
  figures = analysis.draw_figures(result['runs'], str(tmp_path))
  heatmaps = [ax.images[0].get_array() for ax in figures['kernel_magnitudes.png'].axes if ax.images]
  for image, label in zip(heatmaps, ('normal', 'acnet')):
    np.testing.assert_allclose(image, expected[label]['magnitudes'], rtol=BLOCK_RTOL)
  for name, key in [('pruning.png', 'pruning'), ('robustness.png', 'robustness')]:
    bars = figures[name].axes[0].containers
    for container, label in zip(bars, ('normal', 'acnet')):
      heights = [patch.get_height() for patch in container]
      assert heights == pytest.approx([100 * v for v in expected[label][key].values()])
  assert sorted(p.name for p in out.iterdir()) == [
    'kernel_magnitudes.png',
    'pruning.png',
    'report.json',
    'robustness.png',
    'tables.md',
  ]


def test_bad_input_is_one_paragraph(tmp_path, report):
  root, _, _ = report
  with pytest.raises(InputError, match='it has no config.json'):
    analysis.analyze([str(tmp_path)], str(tmp_path / 'out'))
  with pytest.raises(InputError, match='distinct labels'):
    analysis.analyze([str(root / 'acnet')] * 2, str(tmp_path / 'out'), labels=['a', 'a'])
  with pytest.raises(InputError, match='is not a folder'):
    analysis.analyze([str(tmp_path / 'missing')], str(tmp_path / 'out'))
  with pytest.raises(InputError, match='2 labels for 1 workdirs'):
    analysis.analyze([str(root / 'acnet')], str(tmp_path / 'out'), labels=['a', 'b'])
