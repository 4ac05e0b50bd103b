"""Under CI=true a skipped test fails: CI installs everything the selected
tests need (the torch extra, the shared CIFAR archive, root for a tmpfs,
several processes), so a skip there means a test did not run that should
have. Tests that CI does not select (`-m slow`) are deselected, not skipped,
and stay out of it. Loaded as a pytest plugin by tests/conftest.py."""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
  return os.environ.get('CI') == 'true'


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
  outcome = yield
  report = outcome.get_result()
  if report.skipped and under_ci() and not hasattr(report, 'wasxfail'):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = 'failed'
    report.longrepr = f'skipped under CI=true, where every selected test must run: {reason}'
