"""The pipeline comparison against torchvision (benchmarks/augmentation_vs_torchvision.py)
on a tiny image folder, and its probe arithmetic without torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.augmentation_vs_torchvision import (
  PAD,
  draws_of_probe,
  expected_augmented,
  expected_padding_fraction,
  padding_mask,
  probe_image,
)
from tests.support.images import make_image_folder
from tests.support.torch_extra import require_torch


def test_the_probe_gives_back_every_offset_and_flip():
  cells = 2 * PAD + 1
  offsets = np.array([(dy, dx) for dy in range(cells) for dx in range(cells)] * 2)
  flips = np.repeat([False, True], cells * cells)
  probes = expected_augmented(np.repeat(probe_image()[None], len(offsets), 0), offsets, flips)
  found_offsets, found_flips = draws_of_probe(probes)
  np.testing.assert_array_equal(found_offsets, offsets)
  np.testing.assert_array_equal(found_flips, flips)


def test_padding_is_the_border_the_offset_leaves_and_its_mean_fraction_is_uniforms():
  mask = padding_mask(np.array([[0, 8], [4, 4]]), np.array([False, True]))
  assert mask[0, :4].all() and not mask[0, 4:, :28].any() and mask[0, :, 28:].all()
  assert not mask[1].any()
  # E|d - 4| = 20/9 for d uniform on 0..8.
  assert expected_padding_fraction() == pytest.approx(1 - ((32 - 20 / 9) / 32) ** 2)


@pytest.mark.full
def test_both_pipelines_agree_on_a_tiny_folder(tmp_path):
  require_torch()
  from benchmarks.augmentation_vs_torchvision import main

  root = make_image_folder(
    tmp_path / 'images', 20, 10, eval_split='test', size=32, varied_modes=False
  )
  out = tmp_path / 'out.json'
  main([f'--data_dir={root}', '--draws=256', '--epochs=2', f'--json={out}'])
  results = json.loads(out.read_text())
  for split in ('train', 'test'):
    decode = results['decoding'][split]
    assert decode['same_file_order'] and decode['same_labels']
    assert decode['identical_images'] == decode['images']
  assert results['normalisation']['theirs_of_0'] == results['normalisation']['ours_of_0'] == -1.0
  for side in ('ours', 'torchvision'):
    augmented = results['augmentation'][side]
    assert augmented['draws'] == 256 and augmented['offsets_in_range']
    assert sum(map(sum, augmented['offset_counts'])) == 256
    assert augmented['padding_values'] == [-1.0]
    assert augmented['mismatched_pixel_values'] == 0
  assert results['eval']['examples_counted'] == 100 and results['eval']['each_once_in_order']
  # 200 images, batch 128: ours drops 72 an epoch; the authors' loader yields them as a batch.
  assert results['epoch_order']['ours']['dropped_per_epoch'] == [72, 72]
  assert results['epoch_order']['authors_infinite_dataloader']['batch_sizes'] == {'128': 1, '72': 1}
  bn = results['batch_norm']
  assert bn['mirror']['epsilon'] == [bn['ours']['epsilon']]
  assert bn['mirror']['momentum_torch'] == [pytest.approx(1 - bn['ours']['momentum_flax'])]
  assert {layer['n'] for layer in bn['layers']} == {
    128 * 32 * 32,
    128 * 15 * 15,
    128 * 7 * 7,
    72 * 32 * 32,
    72 * 15 * 15,
    72 * 7 * 7,
  }


def test_a_trained_run_evaluates_as_it_did_and_with_pytorchs_unbiased_variances(
  tiny_run, tmp_path, capsys
):
  from benchmarks.augmentation_vs_torchvision import main

  evaluated = json.loads((tiny_run / 'eval.json').read_text())
  main(['--runs_only', f'--runs={tiny_run}', f'--json={tmp_path / "out.json"}'])
  (result,) = json.loads((tmp_path / 'out.json').read_text())['unbiased_running_variance']
  assert 'predictions change' in capsys.readouterr().out
  assert result['top1_as_trained'] == pytest.approx(evaluated['top1'])
  assert result['examples'] == evaluated['num_examples']
  # Scaled variances move the logits a little, and only a little.
  assert 0 < result['max_rel_logit_change'] < 1e-2
