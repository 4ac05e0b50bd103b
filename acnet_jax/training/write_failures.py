"""A write that fails (a full disk, a quota, a read-only or vanished mount) as
one paragraph instead of a traceback from deep inside Orbax or tensorstore.

What is written before the failure stays whole: Orbax writes each checkpoint
into a temporary folder and renames it only once complete, and a rerun
removes such leftovers and resumes from the newest intact checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator

from acnet_jax.errors import REPORTED_ERRORS, InputError
from acnet_jax.training.held_back import HeldBack
from acnet_jax.training.os_errors import causes, os_error_code

# tensorstore (Orbax's writer) names the file in its message.
QUOTED_PATH = re.compile(r'"(/[^"]+)"')
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Codes that can only come from writing, wherever the path; others count only
# where the error names a path in the workdir (a network error is not a write's).
WRITE_ONLY_CODES = (*NO_SPACE, errno.EROFS)


class WriteFailed(InputError):
  """Writing into a folder (a run's workdir, an export's, an analysis's) failed;
  what was written before is intact."""


def os_error(error: BaseException) -> tuple[int, str] | None:
  """(the OS error code behind `error`, following its causes; the text that
  carried it), or None."""
  for link in causes(error):
    code = os_error_code(link)
    if code is not None:
      return code, f'{link} {link.filename or ""}' if isinstance(link, OSError) else str(link)
  return None


def write_failure(error: BaseException, workdir: str) -> tuple[int, str] | None:
  """(the OS error code of a failed write into `workdir`, the file it names
  or ''), or None."""
  found = os_error(error)
  if found is None:
    return None
  code, text = found
  if code not in WRITE_ONLY_CODES and os.path.abspath(workdir) not in text:
    return None
  paths = QUOTED_PATH.findall(text) or [word for word in text.split() if word.startswith('/')]
  return code, paths[-1] if paths else ''


def folder_identity(folder: str) -> tuple[int, int] | None:
  """(device, inode) of `folder`, or None where it is not a folder."""
  try:
    found = os.stat(folder)
  except OSError:
    return None
  return (found.st_dev, found.st_ino) if stat.S_ISDIR(found.st_mode) else None


def failure_of(
  error: BaseException, workdir: str, identity: tuple[int, int] | None
) -> tuple[int, str] | None:
  """`write_failure`, or, where the workdir is gone (a vanished mount: Orbax
  then fails in ways of its own, not all of them OS errors), ENOENT. Gone
  also when a folder of its name is not the one it was (`identity`): Orbax's
  writes recreate the path on the file system below a vanished mount."""
  written = write_failure(error, workdir)
  if written:
    return written
  now = folder_identity(workdir)
  if now is None or (identity is not None and now != identity):
    return errno.ENOENT, os.path.abspath(workdir)
  return None


@contextlib.contextmanager
def reported_as_one_paragraph(workdir: str) -> Iterator[None]:
  """Turns an error whose cause is an OS error into WriteFailed, the
  background writes that failed alike counted in it and not shown; errors
  the user was already told about (REPORTED_ERRORS) and all others pass
  unchanged, and what was held back is shown then."""
  identity = folder_identity(workdir)
  # A message alone counts only where it names a write's OS error: once the
  # workdir is gone, every record would count otherwise, the paragraph's too.
  held = HeldBack(
    lambda error: failure_of(error, workdir, identity) is not None,
    lambda message: write_failure(OSError(message), workdir) is not None,
  )
  held.install()
  reported = False
  try:
    yield
  except REPORTED_ERRORS:
    raise
  except Exception as error:
    failure = failure_of(error, workdir, identity)
    if failure is None:
      raise
    # Held back for good: Orbax's threads and the garbage collector may
    # report more of the same after the paragraph.
    reported = True
    raise WriteFailed(paragraph(workdir, *failure, len(held.records))) from error
  finally:
    if not reported:
      held.release()


def paragraph(workdir: str, code: int, path: str, background: int) -> str:
  problem = f'no space left on {workdir}' if code in NO_SPACE else f'cannot write to {workdir}'
  where = f' writing {path}' if path else ''
  also = f'; background writes that failed alike: {background}' if background else ''
  return (
    f'{problem} ({os.strerror(code)}{where}{also}). The checkpoints written before are '
    'intact; make room (or move the workdir) and run the same command again to resume '
    'from the newest one.'
  )
