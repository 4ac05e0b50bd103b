"""Downloading a tfds catalog data set (CIFAR), failing fast where there is no
network: tfds itself retries an unreachable host for minutes."""

from __future__ import annotations

import os
import shutil
import socket
import urllib.parse

from acnet_jax.errors import InputError

PROBE_SECONDS = 5.0
HTTPS_PORT = 443


def reachable(host: str, timeout: float = PROBE_SECONDS) -> str | None:
  """None if a TCP connection to host:443 opens within `timeout`, else why not."""
  try:
    with socket.create_connection((host, HTTPS_PORT), timeout=timeout):
      return None
  except OSError as error:
    return f'{type(error).__name__}: {error}'


def paths_under(root: str) -> set[str]:
  if not os.path.exists(root):
    return set()
  return {
    root,
    *(
      os.path.join(folder, name)
      for folder, folders, files in os.walk(root)
      for name in folders + files
    ),
  }


def remove_new_paths(root: str, before: set[str]) -> None:
  """Removes what appeared under `root` since `before` was taken, `root` too if it is new."""
  for path in sorted(paths_under(root) - before, key=len):
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)


def download_and_prepare(builder) -> None:
  """builder.download_and_prepare(), with one paragraph instead of tfds's
  retries and traceback when it cannot, and the tfds data folder left as it
  was by a failure (a partial folder would be mistaken for data later)."""
  name, root = builder.info.name, builder.data_dir_root
  host = urllib.parse.urlparse(builder.info.homepage or '').hostname
  # CIFAR's files are on its homepage's host; probing it answers in a second.
  problem = reachable(host) if host else None
  if problem is None:
    before = paths_under(root)
    try:
      builder.download_and_prepare()
      return
    except Exception as error:  # tfds's network and file errors name neither cause nor fix.
      problem = f'{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}'
      remove_new_paths(root, before)
  raise InputError(
    f'tfds could not download or prepare {name!r} in {builder.data_dir} ({problem}). '
    'Without internet, prepare it on a machine with internet and point --config.data_dir at '
    'that tfds data folder, or use --config.dataset=image_folder.'
  )
