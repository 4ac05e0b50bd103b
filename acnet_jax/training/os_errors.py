"""The OS error behind an exception, wherever Orbax or tensorstore wrapped it:
what `write_failures` and `read_errors` both tell errors apart by."""

from __future__ import annotations

import re
from collections.abc import Iterator

# tensorstore reports the OS error in its message, not as an OSError.
TENSORSTORE_OS_ERROR = re.compile(r"os_error_code='(\d+)'")


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
  return int(match.group(1)) if match else None
