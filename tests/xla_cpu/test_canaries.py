"""Every CPU workaround's canary runs; where the plain op no longer shows the
defect behind a workaround, the test warns (pytest's warnings summary) instead
of failing: time it with `python -m benchmarks.xla_cpu_workarounds` and delete
the workaround if it no longer pays. It fails only where a canary errs, or
cannot tell the workaround's own form from the plain op."""

from __future__ import annotations

import warnings

import pytest

from acnet_jax.xla_cpu import canaries, pairwise_sum, pooling


class DefectGone(UserWarning):
  pass


@pytest.mark.parametrize('workaround', sorted(canaries.CANARIES))
def test_the_canary_reports_whether_the_plain_op_still_shows_the_defect(workaround):
  shows = canaries.CANARIES[workaround]()
  assert isinstance(shows, bool)
  if not shows:
    warnings.warn(
      f'acnet_jax.xla_cpu.{workaround}: the plain op no longer shows the defect it works '
      f'around ({canaries.CANARIES[workaround].__name__} in acnet_jax/xla_cpu/canaries.py); '
      f'time it (python -m benchmarks.xla_cpu_workarounds) and delete it if it no longer pays',
      DefectGone,
      stacklevel=1,
    )


def test_the_canaries_find_no_defect_in_the_cpu_forms():
  """The canaries whose own tests do not already show it (the ReLU's and the
  max pool's: tests/xla_cpu/test_relu.py, test_pooling.py)."""
  assert not canaries.strided_channel_sums(pairwise_sum.channel_sums)
  assert not canaries.avg_pool_dilated(pooling.cpu_avg_pool)
