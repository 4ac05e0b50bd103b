"""The analyses of trained runs: skeleton regions, magnitudes, pruning and
robustness, checked against direct computations."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import BLOCK_RTOL

from acnet_jax import analyze, create_model, fuse_params, input_pipeline, presets, skeleton, train
from acnet_jax.errors import InputError
from acnet_jax.feeds import normalize


@pytest.mark.parametrize('k,region,kept', [
    (3, 'corners', 5), (3, 'skeleton', 4), (3, 'border', 9),
    (5, 'corners', 21), (5, 'skeleton', 16), (5, 'border', 9)])
def test_pruning_an_all_ones_kernel_keeps_the_rest(k, region, kept):
  params = {'block': {'conv': {'kernel': jnp.ones((k, k, 2, 3)), 'bias': jnp.ones(3)}},
            'head': {'kernel': jnp.ones((4, 10)), 'bias': jnp.ones(10)},
            'shortcut': {'kernel': jnp.ones((1, 1, 2, 3))}}
  pruned = skeleton.prune(params, region)
  kernel = np.asarray(pruned['block']['conv']['kernel'])
  assert kernel.sum() == kept * 2 * 3
  assert np.all(kernel.sum(axis=(2, 3)) % 6 == 0)  # Whole positions, every channel.
  # Only KxK kernels with K > 1 change.
  for path in [('block', 'conv', 'bias'), ('head', 'kernel'), ('shortcut', 'kernel')]:
    np.testing.assert_array_equal(_get(pruned, path), _get(params, path))


def test_regions_on_a_5x5_kernel():
  assert np.argwhere(skeleton.corners(5)).tolist() == [[0, 0], [0, 4], [4, 0], [4, 4]]
  expected_skeleton = np.zeros((5, 5), bool)
  expected_skeleton[2], expected_skeleton[:, 2] = True, True
  np.testing.assert_array_equal(skeleton.skeleton(5), expected_skeleton)
  assert not skeleton.border(5)[1:4, 1:4].any() and skeleton.border(5).sum() == 16
  three = {'c': {'kernel': jnp.ones((3, 3, 1, 1))}}
  assert skeleton.regions_for(three) == ['corners', 'skeleton']
  assert skeleton.regions_for({**three, 'd': {'kernel': jnp.ones((5, 5, 1, 1))}}) == \
      ['corners', 'skeleton', 'border']


def test_magnitudes_are_normalised_per_layer_then_averaged():
  first = jnp.zeros((3, 3, 2, 2)).at[1, 1].set(-4.0).at[0, 0, 0, 0].set(2.0)
  second = jnp.ones((3, 3, 1, 1)).at[2, 2].set(3.0)
  params = {'a': {'kernel': first}, 'b': {'kernel': second}, 'c': {'kernel': jnp.ones((1, 1, 2, 2))}}
  assert set(skeleton.square_kernels(params)) == {'a', 'b'}
  expected_first = np.zeros((3, 3))
  expected_first[1, 1], expected_first[0, 0] = 1.0, 0.125  # mean |w|: 4 and 0.5.
  expected_second = np.full((3, 3), 1 / 3)
  expected_second[2, 2] = 1.0
  np.testing.assert_allclose(skeleton.position_magnitudes(first), expected_first)
  averages = skeleton.average_magnitudes(params)
  assert list(averages) == [3]
  np.testing.assert_allclose(averages[3], (expected_first + expected_second) / 2)


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return np.asarray(tree)


def tiny_run(workdir, conv: str) -> None:
  """Cifar-quick (5x5 kernels, so every region applies) on 64 synthetic images."""
  config = presets.get_config()
  config.update(dict(model='cfqkbnc', conv=conv, dataset='synthetic', synthetic_examples=64,
                     batch_size=16, eval_batch_size=16, num_epochs=1, log_every_steps=2,
                     eval_every_epochs=1, checkpoint_every_steps=4, warmup_epochs=0,
                     lr_schedule='cosine', seed=3))
  train.train_and_evaluate(config, str(workdir))


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  root = tmp_path_factory.mktemp('analyze')
  for conv in ('normal', 'acnet'):
    tiny_run(root / conv, conv)
  out = root / 'out'
  result = analyze.analyze([str(root / 'normal'), str(root / 'acnet')], str(out))
  return root, out, result


def test_analysis_writes_every_file_and_the_json_holds_the_numbers(report):
  root, out, result = report
  for name in ('report.json', 'tables.md', 'kernel_magnitudes.png', 'pruning.png',
               'robustness.png'):
    assert (out / name).stat().st_size > 0
  saved = json.loads((out / 'report.json').read_text())
  assert saved == json.loads(json.dumps(result))
  assert [run['label'] for run in saved['runs']] == ['normal', 'acnet']
  tables = (out / 'tables.md').read_text()
  for run in saved['runs']:
    assert list(run['pruning']) == ['none', 'corners', 'skeleton', 'border']
    assert list(run['robustness']) == ['original', 'flip_lr', 'flip_ud', 'rot90', 'rot180']
    assert f"| {run['label']} | {100 * run['pruning']['none']:.2f} |" in tables
    # The deploy model is the trained one: same top-1 as eval.json of the run.
    evaluated = json.loads((root / run['label'] / 'eval.json').read_text())
    assert run['trained_top1'] == pytest.approx(evaluated['top1'])
    assert run['pruning']['none'] == pytest.approx(evaluated['fused_top1'])
    assert run['robustness']['original'] == run['pruning']['none']


def direct_deploy(run_dir):
  """The run's deploy model, variables and test split, built without `analyze`."""
  config = presets.run_config(str(run_dir))
  trainer = train.Trainer(config, train.create_mesh())
  state = train.restore_trained(train.trained_checkpoints(config, str(run_dir)), trainer)
  params, stats = fuse_params(state.params, state.batch_stats)
  test = input_pipeline.load_dataset('synthetic', None, 10, config.seed,
                                     synthetic_examples=config.synthetic_examples).test
  x = normalize(jnp.asarray(test.images), config.pixel_mean, config.pixel_std)
  return create_model('cfqkbnc', 'deploy'), params, stats, x, test.labels


def test_pruning_and_robustness_match_a_direct_computation(report):
  root, _, result = report
  run = result['runs'][1]
  model, params, stats, x, labels = direct_deploy(root / 'acnet')

  def top1(p, images):
    logits = model.apply({'params': p, 'batch_stats': stats}, images, train=False)
    return float(np.mean(np.argmax(logits, -1) == labels))

  def zeroed(positions):
    mask = np.ones((5, 5, 1, 1), np.float32)
    for i, j in positions:
      mask[i, j] = 0.0
    return jax.tree_util.tree_map_with_path(
        lambda path, w: w * mask if path[-1].key == 'kernel' and w.ndim == 4 else w, params)

  corners = [(0, 0), (0, 4), (4, 0), (4, 4)]
  skeleton_positions = [(2, j) for j in range(5)] + [(i, 2) for i in range(5) if i != 2]
  ring = [(i, j) for i in range(5) for j in range(5) if i in (0, 4) or j in (0, 4)]
  assert run['pruning']['none'] == pytest.approx(top1(params, x))
  assert run['pruning']['corners'] == pytest.approx(top1(zeroed(corners), x))
  assert run['pruning']['skeleton'] == pytest.approx(top1(zeroed(skeleton_positions), x))
  assert run['pruning']['border'] == pytest.approx(top1(zeroed(ring), x))
  assert run['robustness']['flip_lr'] == pytest.approx(top1(params, x[:, :, ::-1]))
  assert run['robustness']['flip_ud'] == pytest.approx(top1(params, x[:, ::-1]))
  assert run['robustness']['rot90'] == pytest.approx(top1(params, np.rot90(x, 1, (1, 2))))
  assert run['robustness']['rot180'] == pytest.approx(top1(params, x[:, ::-1, ::-1]))

  kernels = [np.asarray(w) for w in jax.tree.leaves(params) if w.ndim == 4 and w.shape[0] == 5]
  per_layer = [np.abs(w).mean((2, 3)) / np.abs(w).mean((2, 3)).max() for w in kernels]
  # Float32 means of up to 2,048 magnitudes in another order: about sqrt(n) u
  # ~ 3e-6 apart (tests/helpers.py).
  np.testing.assert_allclose(run['kernel_magnitudes']['5']['average'], np.mean(per_layer, 0),
                             rtol=BLOCK_RTOL)
  assert run['kernel_magnitudes']['5']['num_layers'] == len(kernels) == 3


def test_bad_input_is_one_paragraph(tmp_path, report):
  root, _, _ = report
  with pytest.raises(InputError, match='it has no config.json'):
    analyze.analyze([str(tmp_path)], str(tmp_path / 'out'))
  with pytest.raises(InputError, match='distinct labels'):
    analyze.analyze([str(root / 'acnet')] * 2, str(tmp_path / 'out'), labels=['a', 'a'])
  completed = subprocess.run(
      [sys.executable, '-m', 'acnet_jax.analyze', f'--workdir={tmp_path / "missing"}',
       f'--output={tmp_path / "out"}'], capture_output=True, text=True, timeout=120)
  assert completed.returncode == 1
  assert 'is not a folder' in completed.stderr
  assert 'Traceback' not in completed.stderr
