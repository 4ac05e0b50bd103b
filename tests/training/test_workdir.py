"""What a run records in its workdir for later commands, and reading it back."""

from __future__ import annotations

import json

import pytest

from acnet_jax.errors import InputError
from acnet_jax.training import workdir as runs
from tests.conftest import TINY_RUN
from tests.support.runs import tiny_config


def test_config_json_holds_the_config_and_what_the_run_learned_of_its_data(tiny_run):
  record = runs.read_run(str(tiny_run))
  assert record.config == tiny_config(**TINY_RUN)
  assert record.input_shape == (32, 32, 3)
  assert record.class_names == tuple(str(i) for i in range(10))


def test_a_run_from_before_recording_reads_with_todays_defaults(tmp_path):
  saved = tiny_config().to_dict()
  del saved['label_smoothing'], saved['acb']['branch_bn'], saved['name']  # Keys added later.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  record = runs.read_run(str(tmp_path))
  assert record.config == tiny_config()
  assert record.input_shape is None and record.class_names is None


@pytest.mark.parametrize(
  'content,message',
  [
    (None, 'is not the --workdir of a training run: it has no config.json'),
    ('{"model": ', 'config.json is not the JSON a training run writes'),
  ],
)
def test_a_workdir_without_a_readable_config_is_refused(content, message, tmp_path):
  if content is not None:
    (tmp_path / 'config.json').write_text(content)
  with pytest.raises(InputError, match=message):
    runs.read_run(str(tmp_path))
