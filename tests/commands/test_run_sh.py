"""./run.sh lists what it can run: every preset file, every conv kind, and for
each model only the recipes it takes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from acnet_jax.training import presets
from tests.support.runs import ROOT


def test_the_usage_lists_every_kind_and_each_models_own_recipes():
  completed = subprocess.run(
    ['./run.sh'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, 'PYTHON': sys.executable},
  )
  assert completed.returncode == 0, completed.stderr
  usage = completed.stdout
  assert 'CONV one of normal, acnet, dbb, repvgg,' in usage
  lines = {
    line.split()[0]: line.split(None, 1)[1]
    for line in usage.splitlines()
    if line.startswith('  ') and len(line.split()) > 1
  }
  assert lines['rc56'] == 'lrs1, lrs2, cosine, densenet'
  assert lines['densenet40'] == 'lrs1, lrs2, densenet'  # No settings of the later recipe.
  assert lines['resnet18'] == 'imagenet'
  assert lines['rc20'] == 'lrs1, lrs2, cosine, densenet'
  for model, recipes in lines.items():
    for recipe in recipes.split(', '):
      presets.preset(model, f'acnet_{recipe}')  # Each listed one is a preset.
  listed = {
    line.strip() for line in usage.splitlines() if line.startswith('  ') and len(line.split()) == 1
  }
  assert {'first_run', 'rc56_acnet', 'cfqkbnc_normal'} <= listed


@pytest.mark.parametrize('preset', ['rc56_acnt', 'rc56:acnet_lrs9'])
def test_an_unknown_preset_is_one_line(preset):
  completed = subprocess.run(
    ['./run.sh', preset],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, 'PYTHON': sys.executable},
  )
  assert completed.returncode != 0 and 'Traceback' not in completed.stderr
