"""The tiny run every training test starts from, and the command-line runs of
the full tier (real subprocesses, where a signal, a crash or a second process
is the point)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from acnet_jax.training import checkpointing
from acnet_jax.training import workdir as runs
from acnet_jax.training.config import get_config
from acnet_jax.training.trainer import Trainer, create_mesh

ROOT = Path(__file__).parents[2]
# rc8 (ResNet-8) on 64 synthetic images: 4 steps of 16 an epoch.
TINY = dict(
  model='rc8',
  dataset='synthetic',
  synthetic_examples=64,
  batch_size=16,
  eval_batch_size=16,
  num_epochs=2,
  log_every_steps=1,
  eval_every_epochs=1,
  checkpoint_every_steps=4,
  warmup_epochs=0,
  lr_boundaries_epochs=(1,),
)
# The same run on the command line (the rc56 preset's recipe, rc8's size).
TINY_FLAGS = [
  '--config=configs/rc56_acnet.py',
  '--config.model=rc8',
  '--config.dataset=synthetic',
  '--config.synthetic_examples=64',
  '--config.batch_size=16',
  '--config.eval_batch_size=16',
  '--config.warmup_epochs=0',
]


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """rc8 on 64 synthetic images: 4 steps of 16 an epoch, 2 epochs."""
  config = get_config()
  config.update(TINY)
  config.update_from_flattened_dict(overrides)
  return config


def folder_config(root, **overrides) -> ml_collections.ConfigDict:
  """The tiny run on a three-class image folder at `root`."""
  return tiny_config(
    **{'dataset': 'image_folder', 'data_dir': str(root), 'num_classes': 3, **overrides}
  )


def flat(tree) -> dict[str, np.ndarray]:
  """Leaves by path, as numpy."""
  return {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def final_state(workdir: Path, config: ml_collections.ConfigDict) -> tuple[dict, int]:
  """The newest checkpoint's variables and optimizer state by path, and its step."""
  trainer = Trainer(config, create_mesh())
  manager = checkpointing.checkpoint_manager(str(workdir), config.keep_checkpoints)
  state = runs.restore_trained(manager, trainer.abstract_state, config)
  return flat((state.params, state.batch_stats, state.opt_state)), int(state.step)


def cli_environment(**extra: str) -> dict[str, str]:
  """This environment for a command: one host device unless `extra` sets
  XLA_FLAGS; other XLA flags (a GPU's deterministic ops) pass through."""
  env = {**os.environ, 'PYTHONPATH': str(ROOT), **extra}
  if 'XLA_FLAGS' not in extra:
    flags = [
      flag
      for flag in env.pop('XLA_FLAGS', '').split()
      if not flag.startswith('--xla_force_host_platform_device_count')
    ]
    if flags:
      env['XLA_FLAGS'] = ' '.join(flags)
  return env


def run_command(
  module: str, *args: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess:
  """`python -m acnet_jax.<module> args` from the repository root, to the end."""
  return subprocess.run(
    [sys.executable, '-m', f'acnet_jax.{module}', *args],
    cwd=ROOT,
    env=cli_environment(**env),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def start_main(workdir: Path, flags: list[str], **env: str) -> subprocess.Popen:
  """`python -m acnet_jax.main --workdir=... flags`, in the background."""
  return subprocess.Popen(
    [sys.executable, '-m', 'acnet_jax.main', f'--workdir={workdir}', *flags],
    cwd=ROOT,
    env=cli_environment(**env),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
  """Its output, once it has ended."""
  try:
    return process.communicate(timeout=timeout)[0]
  finally:
    process.kill()


def wait_for_steps(workdir: Path, steps: int, process: subprocess.Popen) -> None:
  """Until metrics.jsonl has `steps` lines (log_every_steps=1: one per step)."""
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= steps:
      return
    time.sleep(0.05)
  raise AssertionError(f'training did not reach step {steps}: {finish(process)[-2000:]}')
