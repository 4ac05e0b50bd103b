"""Training: one step, schedules and optimizer, checkpoints, resume, devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from acnet_jax import train
from acnet_jax.errors import InputError
from configs import default

ROOT = Path(__file__).parents[1]


def tiny_config(**overrides):
  """rc8 on 64 synthetic images: 4 steps of 16 an epoch."""
  config = default.get_config()
  config.update(dict(model='rc8', dataset='synthetic', synthetic_examples=64, batch_size=16,
                     eval_batch_size=16, num_epochs=2, log_every_steps=1, eval_every_epochs=1,
                     checkpoint_every_steps=4, warmup_epochs=0, lr_boundaries_epochs=(1,)))
  config.update(overrides)
  return config


def flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.parametrize('conv', ['normal', 'acnet'])
def test_one_train_step_on_synthetic_data(conv):
  config = tiny_config(conv=conv)
  trainer = train.Trainer(config, train.load_dataset(config), train.create_mesh())
  before = jax.device_get(trainer.initial_state)
  state, metrics = trainer.train_step(trainer.initial_state, *trainer.train_data,
                                      trainer.batch_indices(0))
  metrics = jax.device_get(metrics)
  assert int(state.step) == 1
  assert np.isfinite(metrics['loss']) and metrics['loss'] > 0
  assert metrics['lr'] == pytest.approx(0.1)
  assert 0.0 <= metrics['top1'] <= 1.0
  for tree_name in ('params', 'batch_stats'):
    old, new = flat(getattr(before, tree_name)), flat(getattr(state, tree_name))
    changed = [k for k in old if not np.allclose(old[k], new[k])]
    assert len(changed) == len(old), f'{tree_name} unchanged: {set(old) - set(changed)}'


def test_piecewise_schedule_with_flat_warmup_keeps_absolute_milestones():
  config = default.preset('rc56', 'acnet_lrs1')
  schedule = train.create_lr_schedule(config, steps_per_epoch=10)
  # warmup_factor=1: the original's warmup does not ramp.
  assert [float(schedule(s)) for s in (0, 49, 999, 1000, 1999, 2000, 4000)] == pytest.approx(
      [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.00001])


def test_warmup_ramp_and_cosine():
  config = tiny_config(warmup_epochs=1, warmup_factor=0.1, lr_boundaries_epochs=(5,))
  schedule = train.create_lr_schedule(config, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(5)) == pytest.approx(0.055)
  assert float(schedule(10)) == pytest.approx(0.1)
  cosine = train.create_lr_schedule(tiny_config(lr_schedule='cosine', learning_rate=0.2), 10)
  assert [float(cosine(s)) for s in (0, 10, 20)] == pytest.approx([0.2, 0.1, 0.0], abs=1e-7)
  with pytest.raises(ValueError, match='valid: piecewise, cosine'):
    train.create_lr_schedule(tiny_config(lr_schedule='linear'), 10)


@pytest.mark.parametrize('on_bn_and_bias,bias_lr_factor', [(False, 1.0), (True, 2.0)])
def test_optimizer_is_torch_sgd_with_l2_in_the_gradient(on_bn_and_bias, bias_lr_factor):
  config = tiny_config(weight_decay=0.01, momentum=0.9, weight_decay_on_bn_and_bias=on_bn_and_bias,
                       bias_lr_factor=bias_lr_factor)
  optimizer = train.create_optimizer(config, optax.constant_schedule(0.5))
  params = {'conv': {'kernel': jnp.array([1.0, -2.0])}, 'bn': {'scale': jnp.array([3.0]),
                                                               'bias': jnp.array([4.0])}}
  grads = jax.tree.map(jnp.ones_like, params)
  opt_state = optimizer.init(params)
  expected, buf = params, None
  for _ in range(2):
    # torch.optim.SGD: d = g + wd * p; buf = momentum * buf + d; p -= lr * buf,
    # with lr * bias_lr_factor in the group of the biases.
    decayed = {m: {k: grads[m][k] + (0.01 * expected[m][k] if (k == 'kernel' or on_bn_and_bias)
                                     else 0.0) for k in params[m]} for m in params}
    buf = decayed if buf is None else jax.tree.map(lambda b, d: 0.9 * b + d, buf, decayed)
    expected = {m: {k: expected[m][k] - 0.5 * (bias_lr_factor if k == 'bias' else 1.0) * buf[m][k]
                    for k in params[m]} for m in params}
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  for key, value in flat(expected).items():
    np.testing.assert_allclose(flat(params)[key], value, rtol=1e-6)


def test_train_then_eval_reproduces_the_final_metrics(tmp_path):
  config = tiny_config(conv='acnet')
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result['step'] == 8 and result['num_examples'] == 16
  assert result['fused_matches'] and result['fused_max_rel_diff'] < 1e-4
  for name in ('top1', 'top5'):
    assert result[name] == result[f'fused_{name}']
  assert result['loss'] == pytest.approx(result['fused_loss'], rel=1e-5)

  written = json.loads((tmp_path / 'eval.json').read_text())
  (tmp_path / 'eval.json').unlink()
  again = train.evaluate(config, str(tmp_path))
  assert json.loads((tmp_path / 'eval.json').read_text()) == again
  for key in ('step', 'num_examples', 'top1', 'top5', 'fused_top1', 'fused_top5'):
    assert again[key] == written[key], key
  for key in ('loss', 'fused_loss'):
    assert again[key] == pytest.approx(written[key], rel=1e-6), key

  # The fused deploy variables are a checkpoint of their own, and restore.
  deploy = ocp.StandardCheckpointer().restore(tmp_path / 'deploy' / '8')
  model = train.create_model(config, 'deploy')
  x = jnp.zeros((2, 32, 32, 3))
  assert model.apply(deploy, x, train=False).shape == (2, 10)

  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert {'train_loss', 'train_lr', 'train_top1', 'train_steps_per_s'} <= set(lines[0])
  assert any('test_fused_top1' in l for l in lines)
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))


def test_eval_of_an_empty_workdir_says_so(tmp_path):
  with pytest.raises(InputError, match='no checkpoint in'):
    train.evaluate(tiny_config(), str(tmp_path))


def test_restoring_another_conv_kind_names_both(tmp_path):
  train.train_and_evaluate(tiny_config(conv='normal', num_epochs=1), str(tmp_path))
  with pytest.raises(InputError, match="conv='normal' but this config has conv='acnet'"):
    train.evaluate(tiny_config(conv='acnet'), str(tmp_path))


STEPS_SCRIPT = """
import sys, jax, numpy as np
from acnet_jax import train
from tests.test_train import tiny_config
# No augmentation, so that a batch in reverse order is the same batch.
config = tiny_config(conv='acnet', augment=False)
trainer = train.Trainer(config, train.load_dataset(config), train.create_mesh())
state, snapshots = trainer.initial_state, {}
for step in range(3):
  indices = trainer.batch_indices(step)
  if sys.argv[2] == 'reversed':
    indices = trainer.shard_batch(np.asarray(indices)[::-1].copy())
  state, metrics = trainer.train_step(state, *trainer.train_data, indices)
  snapshots[f'loss{step + 1}'] = float(metrics['loss'])
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get((state.params, state.batch_stats)))[0]
  snapshots.update({f'step{step + 1}/' + jax.tree_util.keystr(p): v for p, v in leaves})
np.savez(sys.argv[1], devices=jax.device_count(), **snapshots)
"""


def run_steps(out: Path, devices: int, order: str = 'same') -> dict[str, np.ndarray]:
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
         'PYTHONPATH': str(ROOT)}
  subprocess.run([sys.executable, '-c', STEPS_SCRIPT, str(out), order], env=env, check=True,
                 cwd=ROOT, timeout=300)
  return dict(np.load(out))


def max_difference(a: dict, b: dict, step: int) -> float:
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if k.startswith(f'step{step}/'))


def test_one_and_two_devices_agree_to_float_reordering(tmp_path):
  """BN statistics are over the global batch, so 2 devices compute the same
  step as 1, up to the order of float sums. The yardstick for 'up to order' is
  the same batch fed in reverse order on 1 device: mathematically the same
  step, different rounding."""
  one = run_steps(tmp_path / 'one.npz', 1)
  two = run_steps(tmp_path / 'two.npz', 2)
  reordered = run_steps(tmp_path / 'reordered.npz', 1, 'reversed')
  assert (int(one['devices']), int(two['devices'])) == (1, 2)
  for step in (1, 2, 3):
    across_devices = max_difference(one, two, step)
    rounding = max_difference(one, reordered, step)
    print(f'step {step}: loss {one[f"loss{step}"]:.6f} / {two[f"loss{step}"]:.6f}; '
          f'max |param diff| 1 vs 2 devices {across_devices:.3g}, reordered batch {rounding:.3g}')
    # After one step: a few float32 ulps of O(1) parameters.
    if step == 1:
      assert across_devices <= 1e-6
    # Early training at lr 0.1 amplifies any rounding difference step by step;
    # two devices stay within what reordering alone produces.
    assert across_devices <= max(2 * rounding, 1e-6)
    assert abs(one[f'loss{step}'] - two[f'loss{step}']) <= \
        max(2 * abs(one[f'loss{step}'] - reordered[f'loss{step}']), 1e-6)


def train_three_steps(impl: str, reverse_batches: bool = False) -> list[tuple[float, dict]]:
  config = tiny_config(conv='acnet', augment=False)
  config.acb.impl = impl
  trainer = train.Trainer(config, train.load_dataset(config), train.create_mesh())
  state, history = trainer.initial_state, []
  for step in range(3):
    indices = trainer.batch_indices(step)
    if reverse_batches:
      indices = trainer.shard_batch(np.asarray(indices)[::-1].copy())
    state, metrics = trainer.train_step(state, *trainer.train_data, indices)
    history.append((float(metrics['loss']), flat((state.params, state.batch_stats))))
  return history


def test_stacked_acb_trains_like_one_conv_per_branch():
  """The ACB impl changes the computation, not the training: 'stacked' stays
  within the float rounding that reordering a batch produces."""
  branches, stacked = train_three_steps('branches'), train_three_steps('stacked')
  reordered = train_three_steps('branches', reverse_batches=True)
  for step, (a, b, r) in enumerate(zip(branches, stacked, reordered), 1):
    impl_diff = max(float(np.max(np.abs(a[1][k] - b[1][k]))) for k in a[1])
    rounding = max(float(np.max(np.abs(a[1][k] - r[1][k]))) for k in a[1])
    print(f'step {step}: max |param diff| stacked vs branches {impl_diff:.3g}, '
          f'reordered batch {rounding:.3g}')
    assert a[1].keys() == b[1].keys()
    assert impl_diff <= max(2 * rounding, 1e-5)
    assert abs(a[0] - b[0]) <= max(2 * abs(a[0] - r[0]), 1e-5)
