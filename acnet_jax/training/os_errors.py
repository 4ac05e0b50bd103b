"""The OS error behind an exception, wherever Orbax or tensorstore wrapped it:
what `write_failures` and `read_errors` both tell errors apart by."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

# tensorstore reports the OS error in its message, not as an OSError; a file
# that vanished while it wrote or read it, only as its status code.
TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")
TENSORSTORE_NOT_FOUND = 'NOT_FOUND: '


def causes(error: BaseException | None) -> Iterator[BaseException]:
  """`error`, then what it was raised from or while handling, and so on."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def os_error_code(link: BaseException) -> int | None:
  """The OS error code `link` itself carries (not its causes), or None."""
  if isinstance(link, OSError) and link.errno is not None:
    return link.errno
  match = TENSORSTORE_OS_ERROR.search(str(link))
  if match:
    return int(match.group(1))
  return errno.ENOENT if str(link).startswith(TENSORSTORE_NOT_FOUND) else None
