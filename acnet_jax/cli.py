"""What every command-line tool of the package shares: its log, and one
paragraph instead of a traceback for an error the user can fix."""

from __future__ import annotations

import logging as std_logging
from typing import NoReturn

from absl import logging

from acnet_jax.errors import InputError


def quiet_library_info(record: std_logging.LogRecord) -> bool:
  """Orbax logs every save and restore at INFO; keep those lines out of the
  progress display."""
  return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def setup_logging() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(quiet_library_info)


def fail(error: InputError) -> NoReturn:
  logging.error('%s', error)
  raise SystemExit(1) from None
