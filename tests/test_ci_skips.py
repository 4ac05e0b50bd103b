"""The CI hook: a skip fails under CI=true and stays a skip elsewhere."""

from __future__ import annotations

import pytest

SKIPPING = """
import pytest

def test_skips_at_run_time():
  pytest.skip('no archive here')

@pytest.mark.skipif(True, reason='marked to skip')
def test_skipped_by_a_mark():
  pass

@pytest.mark.xfail(reason='known')
def test_expected_to_fail():
  assert False

def test_runs():
  pass
"""


# A skip at run time fails the test; one at set-up (a skipif mark) errors it.
@pytest.mark.parametrize('ci,failed,errors,skipped', [('true', 1, 1, 0), ('', 0, 0, 2)])
def test_a_skip_fails_only_under_ci(ci, failed, errors, skipped, pytester, monkeypatch):
  monkeypatch.setenv('CI', ci)
  pytester.makepyfile(test_some=SKIPPING)
  result = pytester.runpytest_inprocess(
    '-p', 'tests.support.ci_skips', '-p', 'no:cacheprovider', '-p', 'no:xdist', '-o', 'addopts='
  )
  result.assert_outcomes(passed=1, failed=failed, errors=errors, skipped=skipped, xfailed=1)
  if failed:
    result.stdout.fnmatch_lines(['*skipped under CI=true*no archive here*'])
