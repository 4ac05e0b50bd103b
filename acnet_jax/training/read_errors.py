"""What a failed read of a checkpoint says about the checkpoint: damage (its
bytes are wrong) or a fault of the machine reading it.

Damage is only what the bytes show: a file that does not parse or decode, a
missing file. Everything else is a fault (an I/O error, no memory, another
shape or sharding than the run's, a permission): a fault says nothing about
the checkpoint, so it must never be set aside for one.

Orbax and tensorstore raise plain ValueError and Exception. Tensorstore's
message starts with an absl status code (`DATA_LOSS: ...`; none for
INVALID_ARGUMENT) and, where the OS failed, carries `[os_error_code='N']`.
"""

from __future__ import annotations

import errno
import json
import re

from acnet_jax.training.os_errors import causes, os_error_code

STATUS = re.compile(r'^([A-Z_]+): ')
# Status codes tensorstore gives bytes it read but could not decode: a
# corrupt stream, a file shorter than its index says, a bad header.
DAMAGE_STATUS = frozenset({'DATA_LOSS', 'OUT_OF_RANGE', 'FAILED_PRECONDITION'})
# A decode failure reported as INVALID_ARGUMENT, which has no prefix.
DECODE_FAILURE = re.compile(r'Error decoding|[Cc]orruption')
# Tensorstore appends its whole spec to a message: noise in a paragraph.
SPEC = re.compile(r'\s*\[tensorstore_spec=.*', re.DOTALL)


def shows_damage(error: BaseException) -> bool:
  """True where `error`, read from the outside in, shows the checkpoint's
  bytes are wrong; the first link that tells decides."""
  for link in causes(error):
    if isinstance(link, (json.JSONDecodeError, UnicodeDecodeError, FileNotFoundError)):
      return True  # A file that does not parse, or is not there.
    code = os_error_code(link)
    if code is not None:
      return code == errno.ENOENT
    status = STATUS.match(str(link))
    if status:
      return status.group(1) in DAMAGE_STATUS
    if isinstance(link, ValueError) and DECODE_FAILURE.search(str(link)):
      return True
  return False


def is_transient(error: BaseException) -> bool:
  """An OS error that a second try may not meet (EIO from a busy disk or a
  network file system); not out-of-memory, which is not an OS error here."""
  return any(os_error_code(link) not in (None, errno.ENOENT) for link in causes(error))


def summary(error: BaseException) -> str:
  """One line for a paragraph: the link that carries a status or an OS error
  code (the outermost link if none does), without tensorstore's spec."""
  links = list(causes(error))
  telling = next(
    (link for link in links if STATUS.match(str(link)) or os_error_code(link) is not None), links[0]
  )
  lines = SPEC.sub('', str(telling)).strip().splitlines()
  name = type(telling).__name__
  return f'{name}: {lines[0][:400]}' if lines else name
