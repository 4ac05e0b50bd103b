"""What background writes report while a write fails, held back so that the
failure reads as one paragraph (`write_failures`), not a page of tracebacks.

Two kinds: the error records of writes that failed alike (Orbax's save
threads log each with its traceback, asyncio each unretrieved future of one
at garbage collection, even after the paragraph), and `RuntimeError: Event
loop is closed`, which tensorstore prints (through sys.excepthook or
sys.unraisablehook) for each write that finishes after the failure closed
the event loop Orbax wrote from.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

# The loggers background writes report on: absl's (Orbax logs through it) and asyncio's.
BACKGROUND_LOGGERS = ('absl', 'asyncio')
CLOSED_LOOP = 'Event loop is closed'


def is_closed_loop(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and str(error) == CLOSED_LOOP


class HeldBack(logging.Filter):
  """Once installed, holds back the error records of failed writes (by their
  exception: `is_failure`; a record without one, by its message:
  `says_failure`), and closed-loop errors, until `release()` shows them after
  all; never released, it holds them back for good (a paragraph said it all)."""

  def __init__(
    self, is_failure: Callable[[BaseException], bool], says_failure: Callable[[str], bool]
  ):
    super().__init__()
    self.is_failure = is_failure
    self.says_failure = says_failure
    self.records: list[logging.LogRecord] = []
    self.closed_loops: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    self.loggers = [logging.getLogger(name) for name in BACKGROUND_LOGGERS]
    self.excepthook, self.unraisablehook = sys.excepthook, sys.unraisablehook

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR:
      return True
    error = record.exc_info[1] if record.exc_info else None
    if self.is_failure(error) if error else self.says_failure(record.getMessage()):
      self.records.append(record)
      return False
    return True

  def hold_excepthook(self, kind: type, value: BaseException, traceback: Any) -> None:
    if is_closed_loop(value):
      self.closed_loops.append((self.excepthook, (kind, value, traceback)))
    else:
      self.excepthook(kind, value, traceback)

  def hold_unraisablehook(self, unraisable: Any) -> None:
    if is_closed_loop(unraisable.exc_value):
      self.closed_loops.append((self.unraisablehook, (unraisable,)))
    else:
      self.unraisablehook(unraisable)

  def install(self) -> None:
    for logger in self.loggers:
      logger.addFilter(self)
    sys.excepthook, sys.unraisablehook = self.hold_excepthook, self.hold_unraisablehook

  def release(self) -> None:
    for logger in self.loggers:
      logger.removeFilter(self)
    sys.excepthook, sys.unraisablehook = self.excepthook, self.unraisablehook
    for record in self.records:
      logging.getLogger(record.name).handle(record)
    for hook, args in self.closed_loops:
      hook(*args)
