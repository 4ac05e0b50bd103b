"""The decoding table of the docs (benchmarks/torchvision_pipeline.py): our
rows beside torchvision's of the same crop and workers."""

from __future__ import annotations

from benchmarks.torchvision_pipeline import markdown


def decoding(size: int, workers: int, images_per_s: float, cores: float) -> dict:
  return {
    'image_size': size,
    'num_workers': workers,
    'images_per_s': images_per_s,
    'cores_used': cores,
    'images_per_s_per_core': images_per_s / cores,
  }


def test_each_setting_of_ours_is_shown_beside_theirs_and_one_they_lack_is_left_out():
  ours = [decoding(224, 1, 800.4, 1.0), decoding(224, 2, 1500.0, 1.6), decoding(64, 1, 10.0, 1.0)]
  theirs = [decoding(224, 2, 1200.0, 1.9), decoding(224, 1, 600.0, 1.02)]
  assert markdown(ours, theirs).splitlines()[2:] == [
    '| 224 | 1 | 800 | 1.00 | 800 | 600 | 1.02 | 588 |',
    '| 224 | 2 | 1500 | 1.60 | 938 | 1200 | 1.90 | 632 |',
  ]
