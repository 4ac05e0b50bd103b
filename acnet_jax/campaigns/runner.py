"""Runs a plan's runs one after another, each as `python -m acnet_jax.main`
(or, for a PyTorch reference run, `python -m benchmarks.authors_reference`,
which writes the same workdir layout) in a child process, and picks up where
it stopped when started again.

A finished run (its eval.json and the deploy variables of that step) is
skipped, and so is one whose evidence an earlier collect copied into the
results folder (its workdir may be gone with the machine it ran on); an
unfinished one resumes from its newest checkpoint, since main
does that for a workdir that has checkpoints. One campaign holds the root
folder's lock, and main holds each run's: two starts never train the same
workdir. SIGTERM or SIGINT to the campaign is passed to the run, which saves
a checkpoint and exits; the campaign then starts nothing more.

Each start of a run appends a line to WORKDIR/campaign.jsonl: when, the
command, the commit of the code that ran it, the machine (CPU model, cores,
OS), and the checkpoint steps before and after, so the provenance of every
step is on record: a run resumed on another kind of CPU says where.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from acnet_jax.benchmarking.results import machine
from acnet_jax.campaigns.plan import Plan, train_command
from acnet_jax.training.lock import WorkdirBusy, WorkdirLock

PROVENANCE_FILE = 'campaign.jsonl'
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a child gets when its parent dies.


def newest_checkpoint_step(workdir: str) -> int | None:
  """The newest step in WORKDIR/checkpoints (Orbax names a step's folder by
  its number; a save in progress has a suffix and is not counted)."""
  directory = os.path.join(workdir, 'checkpoints')
  steps = (
    [int(name) for name in os.listdir(directory) if name.isdigit()]
    if os.path.isdir(directory)
    else []
  )
  return max(steps, default=None)


def is_finished(workdir: str) -> bool:
  """Trained to the end and evaluated: main writes eval.json after the deploy
  variables of the last step (an evaluation alone writes no deploy/)."""
  path = os.path.join(workdir, 'eval.json')
  if not os.path.isfile(path):
    return False
  with open(path) as f:
    step = json.load(f).get('step')
  return os.path.isdir(os.path.join(workdir, 'deploy', str(step)))


def is_collected(results: str | None, name: str) -> bool:
  """The run's evidence is in RESULTS/<name>: collect copies only finished runs'."""
  return results is not None and os.path.isfile(os.path.join(results, name, 'eval.json'))


def code_version() -> dict[str, Any]:
  """The git commit of the acnet_jax that runs the campaign, and whether its
  tracked files differ from it; None where it is not a git checkout."""
  source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  root = os.path.dirname(source)

  def git(*args: str) -> str | None:
    try:
      return subprocess.run(
        ['git', '-C', root, *args], capture_output=True, text=True, check=True
      ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      return None

  commit = git('rev-parse', 'HEAD')
  changed = git(
    'status',
    '--porcelain',
    '--untracked-files=no',
    '--',
    'acnet_jax',
    'configs',
    'benchmarks',
    'authors_torch',
  )
  return {'commit': commit, 'modified': bool(changed) if commit else None}


def end_with_parent() -> None:
  """In the child before it runs: SIGTERM it if the campaign dies (Linux), so
  a killed campaign leaves no run training on without it."""
  if sys.platform.startswith('linux'):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
  """Runs one child at a time and passes SIGTERM/SIGINT on to it; `stopped`
  tells whether a signal came, so no further run starts."""

  def __init__(self):
    self.child: subprocess.Popen | None = None
    self.stopped = False

  def __enter__(self) -> Supervisor:
    self.previous = {sig: signal.signal(sig, self.forward) for sig in FORWARDED_SIGNALS}
    return self

  def __exit__(self, *exc_info: object) -> None:
    for sig, handler in self.previous.items():
      signal.signal(sig, handler)

  def forward(self, signal_number: int, frame: object) -> None:
    self.stopped = True
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(signal_number)

  def run(self, command: Sequence[str]) -> int:
    # Its own session: Ctrl-C in the terminal reaches the campaign only, which
    # passes it on once (a second SIGINT would make main exit unsaved).
    self.child = subprocess.Popen(command, start_new_session=True, preexec_fn=end_with_parent)
    try:
      return self.child.wait()
    finally:
      self.child = None


def record_segment(workdir: str, entry: dict[str, Any]) -> None:
  """One line of campaign.jsonl for a start of the run, written when it ends."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, PROVENANCE_FILE), 'a') as f:
    f.write(json.dumps(entry) + '\n')


def take_root(root: str) -> WorkdirLock:
  lock = WorkdirLock(root)
  try:
    lock.acquire()
  except WorkdirBusy:
    raise WorkdirBusy(
      f'{root} is in use by another campaign ({lock.holder()}); one campaign '
      'at a time trains its runs. Nothing was changed.'
    ) from None
  return lock


def run_plan(plan: Plan, root: str, data_dir: str | None, results: str | None = None) -> int:
  """Trains every unfinished run of `plan` under `root`, in order, skipping
  those already collected into `results`; returns 0 when all are finished,
  else the exit code of the run that stopped."""
  lock = take_root(root)
  version = code_version()
  try:
    with Supervisor() as supervisor:
      for index, run in enumerate(plan.runs, 1):
        workdir = os.path.join(root, run.name)
        label = f'run {index}/{len(plan.runs)} {run.name}'
        if is_finished(workdir):
          logging.info('%s: finished, skipped', label)
          continue
        if is_collected(results, run.name):
          logging.info('%s: its evidence is in %s, skipped', label, results)
          continue
        if supervisor.stopped:
          return 128 + signal.SIGTERM
        before = newest_checkpoint_step(workdir)
        logging.info(
          '%s: %s',
          label,
          'from scratch' if before is None else f'resuming from the checkpoint of step {before:,}',
        )
        module, arguments = train_command(plan, run, workdir, data_dir)
        started = time.strftime('%Y-%m-%dT%H:%M:%S%z')
        code = supervisor.run([sys.executable, '-m', module, *arguments])
        record_segment(
          workdir,
          {
            'started': started,
            'ended': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'exit_code': code,
            'from_step': before,
            'to_step': newest_checkpoint_step(workdir),
            **version,
            'machine': machine(),
            'module': module,
            'arguments': arguments,
          },
        )
        if code != 0:
          how = 'was stopped' if supervisor.stopped else f'failed (exit code {code})'
          logging.warning('%s %s; run the same command again to resume it.', label, how)
          return code
  finally:
    lock.release()
  return 0
