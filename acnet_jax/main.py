"""Entry point: python -m acnet_jax.main --config=configs/rc56_acnet.py --workdir=DIR"""

from __future__ import annotations

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from acnet_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/rc56_acnet.py '
                                'or configs/rc56.py:acnet_lrs1.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and eval.json.')
flags.DEFINE_enum('mode', 'train', sorted(train.MODES),
                  'train: train (resuming from workdir), then evaluate; eval: evaluate the '
                  'newest checkpoint in workdir.')
flags.mark_flags_as_required(['config', 'workdir'])


def quiet_library_info(record: std_logging.LogRecord) -> bool:
  """Orbax logs every save at INFO; keep those lines out of the progress display."""
  return record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(quiet_library_info)
  train.MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
