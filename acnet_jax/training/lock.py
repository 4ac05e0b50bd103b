"""One run per workdir: a lock on WORKDIR/.lock that the kernel releases when
its process ends, so a crashed run never leaves it behind.

`fcntl.lockf` (POSIX record locks) is what NFS honours across hosts (through
lockd); flock-style locks are local to a host on some shared filesystems. The
file names the holder (host, process, start, command line) for the paragraph
a second launch prints. Only process 0 of a run takes it (`loop`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from acnet_jax.errors import InputError

LOCK_FILE = '.lock'


class WorkdirBusy(InputError):
  """Another run holds the workdir."""


class WorkdirLock:
  """`acquire()` takes the lock or raises WorkdirBusy naming its holder;
  `release()` gives it back. Opening the file changes nothing in it: a refused
  launch leaves the workdir as it was."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self.fd: int | None = None

  def acquire(self) -> None:
    os.makedirs(self.workdir, exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      raise WorkdirBusy(
        f'{self.workdir} is in use by another run ({self.holder()}); two '
        'runs would write the same checkpoints. Wait for it to end or stop '
        'it, or give this run another --workdir. Nothing was changed.'
      ) from None
    os.ftruncate(fd, 0)
    os.write(
      fd,
      json.dumps(
        {
          'host': socket.gethostname(),
          'pid': os.getpid(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S'),
          'command': ' '.join(sys.argv),
        }
      ).encode(),
    )
    self.fd = fd

  def holder(self) -> str:
    try:
      with open(self.path) as f:
        who = json.load(f)
      return f'process {who["pid"]} on {who["host"]}, started {who["started"]}: {who["command"]}'
    except (OSError, ValueError, KeyError):  # Written a moment too late, or by hand.
      return f'the holder of {self.path}'

  def release(self) -> None:
    if self.fd is not None:
      fcntl.lockf(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = None
