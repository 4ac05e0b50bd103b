"""The torch extra in the tests: the authors' PyTorch mirror (authors_torch)
and the torchvision round trip need it."""

import pytest


def require_torch() -> None:
  """Skips the calling test without the torch extra (a failure under CI,
  tests/support/ci_skips.py). Called from tests (or their fixtures), not at
  import: the fast tier collects their modules without torch. Its tests are
  marked needs_torch."""
  try:
    import torch  # noqa: F401
  except ImportError:
    pytest.skip("needs PyTorch, the torch extra: pip install -e '.[test,torch]'")
