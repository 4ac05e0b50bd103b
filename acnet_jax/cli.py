"""What every command-line tool of the package shares: its log, and one
paragraph instead of a traceback for an error the user can fix."""

from __future__ import annotations

import logging as std_logging
from typing import NoReturn

from absl import logging

from acnet_jax.errors import InputError, TrainingError

# Libraries whose INFO lines are noise around the progress bar: Orbax logs
# every save and restore, JAX every accelerator it looks for and does not find.
QUIET_INFO = ('/orbax/', '/jax/_src/xla_bridge.py')


def quiet_library_info(record: std_logging.LogRecord) -> bool:
  return record.levelno >= std_logging.WARNING or not any(
    part in record.pathname for part in QUIET_INFO
  )


def setup_logging() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(quiet_library_info)


def fail(error: InputError | TrainingError) -> NoReturn:
  logging.error('%s', error)
  raise SystemExit(1) from None
