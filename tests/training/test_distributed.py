"""One process with two devices, and two processes through jax.distributed
(CPU, gloo, loopback only), compute the step and the run of one device
(the full tier: each needs processes of its own)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.numerics import MODEL_RTOL
from tests.support.runs import ROOT, TINY_FLAGS
from tests.training.test_steps import assert_same_step

pytestmark = [pytest.mark.full, pytest.mark.needs_processes]

RUN_FLAGS = [
  *TINY_FLAGS,
  '--config.num_epochs=1',
  '--config.log_every_steps=1',
  '--config.checkpoint_every_steps=2',
]

# One train-mode pass at the initial parameters, on the first batch (no
# augmentation): what two computations of the same step must agree on. Later
# steps are not compared: BatchNorm's backward pass on a small batch amplifies
# rounding step after step, so their differences measure chaos, not bugs.
# argv: output file, ACB impl[, --coordinator_address=A --num_processes=N
# --process_id=I, as main takes them: then each process writes FILE.I.npz].
GRADIENTS_SCRIPT = """
import sys, jax, numpy as np
from acnet_jax import xla_cpu
xla_cpu.use_project_flags()  # As main: the flags XLA_FLAGS below lacks.
flags = dict(arg[2:].split('=', 1) for arg in sys.argv[3:])
out = sys.argv[1]
if flags:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(flags['coordinator_address'], int(flags['num_processes']),
                             int(flags['process_id']))
  out = f"{out}.{flags['process_id']}.npz"
from tests.support.runs import tiny_config
from tests.training.test_steps import first_step_gradients
config = tiny_config(conv='acnet', augment=False)
config.acb.impl = sys.argv[2]
np.savez(out, devices=jax.device_count(), **first_step_gradients(config))
"""


def free_loopback_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def environment(devices_per_process: int) -> dict[str, str]:
  return {
    **os.environ,
    'JAX_PLATFORMS': 'cpu',
    'PYTHONPATH': str(ROOT),
    'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices_per_process}',
  }


def run_first_step(out: Path, devices: int, impl: str = 'branches') -> dict[str, np.ndarray]:
  subprocess.run(
    [sys.executable, '-c', GRADIENTS_SCRIPT, str(out), impl],
    env=environment(devices),
    check=True,
    cwd=ROOT,
    timeout=300,
  )
  return dict(np.load(out))


def start_two_processes(command: list[str]) -> list[subprocess.Popen]:
  """`command` + the coordinator flags, once per process, one CPU device each."""
  address = f'127.0.0.1:{free_loopback_port()}'
  return [
    subprocess.Popen(
      [*command, f'--coordinator_address={address}', '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT,
      env=environment(1),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]


def outputs_of(processes: list[subprocess.Popen], returncode: int = 0) -> list[str]:
  """Waits for all; each must exit with `returncode`."""
  try:
    outputs = [p.communicate(timeout=600)[0] for p in processes]
  finally:
    for p in processes:
      p.kill()
  for p, output in zip(processes, outputs):
    assert p.returncode == returncode, output[-3000:]
  return outputs


def cli(workdir: Path, flags: list[str]) -> list[str]:
  return [sys.executable, '-m', 'acnet_jax.main', f'--workdir={workdir}', *flags]


def train_losses(workdir: Path) -> list[float]:
  lines = [json.loads(r) for r in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return [r['train_loss'] for r in lines if 'train_loss' in r]


def test_one_and_two_devices_compute_the_same_step(tmp_path):
  """BN statistics are over the global batch, so 2 devices compute the same
  step as 1, up to the order of float sums."""
  one = run_first_step(tmp_path / 'one.npz', 1)
  two = run_first_step(tmp_path / 'two.npz', 2)
  assert (int(one.pop('devices')), int(two.pop('devices'))) == (1, 2)
  assert_same_step(two, one)


def test_two_processes_compute_the_same_step_as_one_process_with_two_devices(tmp_path):
  """Loss, gradients and batch statistics of one step: the processes exchange
  BN sums and gradients through gloo."""
  outputs_of(
    start_two_processes(
      [sys.executable, '-c', GRADIENTS_SCRIPT, str(tmp_path / 'process.npz'), 'branches']
    )
  )
  one = run_first_step(tmp_path / 'one.npz', 2)
  for i in range(2):
    two = dict(np.load(tmp_path / f'process.npz.{i}.npz'))
    assert int(two.pop('devices')) == int(one['devices']) == 2
    assert_same_step(two, {k: v for k, v in one.items() if k != 'devices'})


def test_two_processes_run_the_cli_like_one_process_with_two_devices(tmp_path):
  """The whole job on two processes: the first step's loss as one process's
  (within MODEL_RTOL: one forward pass, BN sums in another order), the same
  number of steps and test images. Later losses drift apart by rounding."""
  single = tmp_path / 'single'
  subprocess.run(
    cli(single, RUN_FLAGS),
    cwd=ROOT,
    env=environment(2),
    check=True,
    timeout=600,
    capture_output=True,
  )

  multi = tmp_path / 'multi'
  outputs = outputs_of(start_two_processes(cli(multi, RUN_FLAGS)))
  assert '2 cpu devices in 2 processes' in outputs[0]

  one, two = train_losses(single), train_losses(multi)
  assert len(one) == len(two) == 4
  assert two[0] == pytest.approx(one[0], rel=MODEL_RTOL)
  a = json.loads((single / 'eval.json').read_text())
  b = json.loads((multi / 'eval.json').read_text())
  for key in ('step', 'num_examples'):
    assert a[key] == b[key], key
  assert a['fused_matches'] and b['fused_matches']


def test_a_signal_to_one_process_stops_both_at_the_same_step(tmp_path):
  """A preempted host gets SIGTERM, the others do not: all must agree to stop
  (every stop_agree_seconds), save the same step together and exit as the
  signalled one does. The schedule of agreements is test_stopping.py's; the
  time bound here only catches a run that never stops (CI's cores are shared
  with another test, so its seconds vary)."""
  workdir = tmp_path / 'run'
  flags = [flag for flag in RUN_FLAGS if not flag.startswith('--config.num_epochs')]
  processes = start_two_processes(
    cli(
      workdir,
      [
        *flags,
        '--config.num_epochs=100000',
        '--config.checkpoint_every_steps=100000',
        '--config.stop_agree_seconds=1',
      ],
    )
  )
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 300
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
    if time.time() > deadline or any(p.poll() is not None for p in processes):
      for p in processes:
        p.kill()
      raise AssertionError([p.communicate()[0][-3000:] for p in processes])
    time.sleep(0.05)
  processes[1].send_signal(signal.SIGTERM)
  signalled = time.time()
  outputs = outputs_of(processes, 128 + signal.SIGTERM)
  assert time.time() - signalled < 120
  steps = [
    int(re.search(r'Stopped by SIGTERM(?: to process 1)? at step (\d+);', output).group(1))
    for output in outputs
  ]
  assert 'Stopped by SIGTERM to process 1 at step' in outputs[0]
  assert steps[0] == steps[1]
  assert sorted(os.listdir(workdir / 'checkpoints')) == [str(steps[0])]


def faulty(workdir: Path, *faults: str) -> list[str]:
  """The job on two processes with `faults` (PROCESS:STEP:KIND each, as
  tests/support/process_faults.py takes them)."""
  return [
    sys.executable,
    '-m',
    'tests.support.process_faults',
    *(f'--fault={fault}' for fault in faults),
    f'--workdir={workdir}',
    *RUN_FLAGS,
  ]


def test_a_read_fault_on_one_process_is_decided_alike_on_both(tmp_path):
  """Process 1 reads the newest checkpoint (step 4) as damaged: both restore
  step 2 and set 4 aside. Then process 1 cannot read it at all (an I/O error
  on every try): both stop, naming it, and move nothing. Then process 0
  cannot move the damaged step 4 aside: neither waits for the other."""
  workdir = tmp_path / 'run'
  outputs_of(start_two_processes(cli(workdir, RUN_FLAGS)))
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']

  outputs = outputs_of(start_two_processes(faulty(workdir, '1:4:damage')))
  for output in outputs:
    assert 'restored step 2' in output, output[-3000:]
  assert 'Checkpoint of step 4 is damaged and was skipped: process 1 reads it so' in outputs[0]
  assert 'Checkpoint of step 4 is damaged and was skipped' in outputs[1]
  assert sorted(os.listdir(workdir / 'damaged_checkpoints')) == ['4']
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']  # 3 and 4 trained again.

  before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob('*'))
  outputs = outputs_of(start_two_processes(faulty(workdir, '1:4:eio')), returncode=1)
  assert 'process 1 could not use the checkpoint of step 4' in outputs[0], outputs[0][-3000:]
  assert (
    'cannot read the checkpoint of step 4' in outputs[1] and 'Input/output error' in outputs[1]
  ), outputs[1][-3000:]
  for output in outputs:
    assert 'Nothing was moved or deleted' in output and 'Traceback' not in output
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob('*')) == before

  # Process 1 reads it as damaged, process 0 cannot move it aside: both stop.
  outputs = outputs_of(
    start_two_processes(faulty(workdir, '1:4:damage', '0:4:unmovable')), returncode=1
  )
  assert re.search(r'cannot write to .*Permission denied', outputs[0]), outputs[0][-3000:]
  assert 'process 0 could not move the damaged checkpoints' in outputs[1], outputs[1][-3000:]
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
