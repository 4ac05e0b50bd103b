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
from tensorboard.backend.event_processing import event_accumulator

from acnet_jax import optim, train
from acnet_jax.errors import InputError
from acnet_jax import presets
from acnet_jax.models import create_model

ROOT = Path(__file__).parents[1]


def tiny_config(**overrides):
  """rc8 on 64 synthetic images: 4 steps of 16 an epoch."""
  config = presets.get_config()
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
  trainer = train.Trainer(config, train.create_mesh())
  before = jax.device_get(trainer.initial_state)
  state, metrics = trainer.train_step(trainer.initial_state, trainer.train_inputs(0))
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
  config = presets.preset('rc56', 'acnet_lrs1')
  schedule = optim.create_lr_schedule(config, steps_per_epoch=10)
  # warmup_factor=1: the original's warmup does not ramp.
  assert [float(schedule(s)) for s in (0, 49, 999, 1000, 1999, 2000, 4000)] == pytest.approx(
      [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.00001])


def test_warmup_ramp_and_cosine():
  config = tiny_config(warmup_epochs=1, warmup_factor=0.1, lr_boundaries_epochs=(5,))
  schedule = optim.create_lr_schedule(config, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(5)) == pytest.approx(0.055)
  assert float(schedule(10)) == pytest.approx(0.1)
  cosine = optim.create_lr_schedule(tiny_config(lr_schedule='cosine', learning_rate=0.2), 10)
  assert [float(cosine(s)) for s in (0, 10, 20)] == pytest.approx([0.2, 0.1, 0.0], abs=1e-7)
  with pytest.raises(ValueError, match='valid: piecewise, cosine'):
    optim.create_lr_schedule(tiny_config(lr_schedule='linear'), 10)


@pytest.mark.parametrize('on_bn_and_bias,bias_lr_factor', [(False, 1.0), (True, 2.0)])
def test_optimizer_is_torch_sgd_with_l2_in_the_gradient(on_bn_and_bias, bias_lr_factor):
  config = tiny_config(weight_decay=0.01, momentum=0.9, weight_decay_on_bn_and_bias=on_bn_and_bias,
                       bias_lr_factor=bias_lr_factor)
  optimizer = optim.create_optimizer(config, optax.constant_schedule(0.5))
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
  # TensorBoard's own reader finds every logged value at its step.
  events = event_accumulator.EventAccumulator(str(tmp_path / 'tensorboard'))
  events.Reload()
  logged = [(s.step, s.value) for s in events.Scalars('train_loss')]
  assert logged == [(l['step'], pytest.approx(l['train_loss'])) for l in lines if 'train_loss' in l]
  assert len(logged) >= 2


# Every CIFAR model with its recipe. Only cfqkbnc (5x5 convs) runs in the
# default suite; the others take 1-15 min each to compile here, so they are
# marked slow: `python -m pytest -m slow` runs them (README, Tests). At a small
# learning rate: after two steps at the recipe's (0.2 at batch 16), rc110 dbb's
# eval-mode activations reach 5e42, past float32's range, and both the trained
# and the fused logits are garbage (in float64 they agree to 9e-8).
CIFAR_PRESETS = [pytest.param('cfqkbnc', 'cosine'),
                 *(pytest.param(model, recipe, marks=pytest.mark.slow) for model, recipe in
                   [('vc', 'cosine'), ('densenet40', 'densenet'), ('rc56', 'cosine'),
                    ('wrnc16', 'cosine'), ('rc110', 'cosine')])]


@pytest.mark.parametrize('model,recipe', CIFAR_PRESETS)
@pytest.mark.parametrize('conv', ['dbb', 'repvgg'])
def test_cli_trains_the_new_kinds_and_fuses_them_exactly(conv, model, recipe, tmp_path):
  """The try_arg route, two steps."""
  completed = subprocess.run(
      [sys.executable, '-m', 'acnet_jax.main', f'--config=configs/{model}.py:{conv}_{recipe}',
       f'--workdir={tmp_path}', '--config.dataset=synthetic', '--config.synthetic_examples=32',
       '--config.batch_size=16', '--config.eval_batch_size=16', '--config.num_epochs=1',
       '--config.eval_every_epochs=1', '--config.log_every_steps=1',
       '--config.learning_rate=0.01'],
      cwd=ROOT, env={**os.environ, 'PYTHONPATH': str(ROOT)}, capture_output=True, text=True,
      timeout=3600)
  assert completed.returncode == 0, completed.stderr[-3000:]
  result = json.loads((tmp_path / 'eval.json').read_text())
  assert (result['step'], result['num_examples']) == (2, 8)
  assert result['fused_matches'] and result['fused_max_rel_diff'] < 1e-4
  assert (result['top1'], result['top5']) == (result['fused_top1'], result['fused_top5'])
  assert json.loads((tmp_path / 'config.json').read_text())['conv'] == conv
  # The deploy variables saved at the end are those of the model's normal deploy form.
  deploy = ocp.StandardCheckpointer().restore(tmp_path / 'deploy' / '2')
  normal_deploy = jax.eval_shape(lambda: create_model(model, 'deploy').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  for collection in ('params', 'batch_stats'):
    assert jax.tree.map(jnp.shape, deploy.get(collection, {})) == \
        jax.tree.map(jnp.shape, normal_deploy.get(collection, {})), collection


def test_eval_of_an_empty_workdir_says_so(tmp_path):
  with pytest.raises(InputError, match='no checkpoint in'):
    train.evaluate(tiny_config(), str(tmp_path))


def test_restoring_another_conv_kind_names_both(tmp_path):
  train.train_and_evaluate(tiny_config(conv='normal', num_epochs=1), str(tmp_path))
  with pytest.raises(InputError, match="conv='normal' but this config has conv='acnet'"):
    train.evaluate(tiny_config(conv='acnet'), str(tmp_path))


# One train-mode pass at the initial parameters, on the first batch (no
# augmentation): what two computations of the same step must agree on. Later
# steps are not compared: BatchNorm's backward pass on a small batch amplifies
# rounding step after step (the README shows 1e-2 after three steps from
# merely reordering a batch), so their differences measure chaos, not bugs.
# argv: output file, ACB impl[, --coordinator_address=A --num_processes=N
# --process_id=I, as main takes them: then each process writes FILE.I.npz].
GRADIENTS_SCRIPT = """
import sys, jax, numpy as np
flags = dict(arg[2:].split('=', 1) for arg in sys.argv[3:])
out = sys.argv[1]
if flags:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(flags['coordinator_address'], int(flags['num_processes']),
                             int(flags['process_id']))
  out = f"{out}.{flags['process_id']}.npz"
from tests.test_train import tiny_config, first_step_gradients
config = tiny_config(conv='acnet', augment=False)
config.acb.impl = sys.argv[2]
np.savez(out, devices=jax.device_count(), **first_step_gradients(config))
"""


def first_step_gradients(config) -> dict[str, np.ndarray]:
  """Loss, gradients and new batch statistics of the first step, by path."""
  trainer = train.Trainer(config, train.create_mesh())
  x, y = jax.jit(trainer.feed.prepare_train)(trainer.train_inputs(0), 0)
  replicated = jax.tree.map(lambda _: trainer.replicated, (0, 0, 0, 0))
  loss, _, batch_stats, grads = jax.jit(train.gradients, out_shardings=replicated)(
      trainer.initial_state, x, y, train.dropout_key(config.seed, 0))
  loss, grads, batch_stats = train.to_host((loss, grads, batch_stats))
  return {'loss': loss, **{f'grad{k}': v for k, v in flat(grads).items()},
          **{f'stats{k}': v for k, v in flat(batch_stats).items()}}


def run_first_step(out: Path, devices: int, impl: str = 'branches') -> dict[str, np.ndarray]:
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
         'PYTHONPATH': str(ROOT)}
  subprocess.run([sys.executable, '-c', GRADIENTS_SCRIPT, str(out), impl], env=env, check=True,
                 cwd=ROOT, timeout=300)
  return dict(np.load(out))


def assert_same_step(actual: dict, expected: dict) -> None:
  """Every leaf within RTOL of its own largest magnitude.

  The two computations sum the same terms in another order (over devices, or
  over branches and padded kernel taps). float32 rounds each operation by at
  most u = 2**-24 ~ 6e-8; an order change in a sum of n terms moves it by
  about sqrt(n) u of the terms' magnitude (rounding errors add as a random
  walk), and the longest sums here are the weight-gradient convolutions over
  16 images x 32 x 32 pixels: sqrt(16384) u ~ 8e-6. The BatchNorm backward pass
  subtracts nearly equal sums (the gradient minus its batch mean), which can
  cost another factor of ten relative to the result: 1e-4 bounds both, and a
  real difference (a wrong padding, a missing branch) is of order 1.
  """
  assert actual.keys() == expected.keys()
  for key, value in expected.items():
    scale = max(float(np.max(np.abs(value))), 1e-30)
    error = float(np.max(np.abs(actual[key] - value))) / scale
    assert error <= RTOL_REORDERED_SUMS, f'{key}: relative difference {error:.3g}'


RTOL_REORDERED_SUMS = 1e-4


def test_one_and_two_devices_compute_the_same_step(tmp_path):
  """BN statistics are over the global batch, so 2 devices compute the same
  step as 1, up to the order of float sums."""
  one = run_first_step(tmp_path / 'one.npz', 1)
  two = run_first_step(tmp_path / 'two.npz', 2)
  assert (int(one.pop('devices')), int(two.pop('devices'))) == (1, 2)
  assert_same_step(two, one)


def test_stacked_acb_computes_the_same_step_as_one_conv_per_branch():
  """The ACB impl changes the computation, not the training."""
  config = tiny_config(conv='acnet', augment=False)
  branches = first_step_gradients(config)
  config.acb.impl = 'stacked'
  assert_same_step(first_step_gradients(config), branches)


def test_a_bfloat16_step_keeps_float32_state_and_the_float32_loss():
  """Convs and matmuls in bfloat16 (8 significant bits: each rounding is off by
  up to 2**-9 ~ 2e-3 relative); parameters, BN statistics, optimizer state
  and the loss stay float32. The first loss, on the same batch and initial
  parameters, is a sum of many such roundings that mostly cancel: a 2% bound
  holds with room, and a wrong cast (an int, a lost BN) is off by far more."""
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config(conv='acnet', augment=False, dtype=dtype)
    trainer = train.Trainer(config, train.create_mesh())
    state, metrics = trainer.train_step(trainer.initial_state, trainer.train_inputs(0))
    losses[dtype] = float(metrics['loss'])
    leaves = jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
    assert {leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == \
        {jnp.dtype('float32')}
    result = trainer.evaluate(state)
    # bfloat16 rounding may flip a near-tie between two classes, not more.
    assert result['fused_matches'] and abs(result['top1'] - result['fused_top1']) <= 1 / 16
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=2e-2)
