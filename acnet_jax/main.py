"""Entry point: python -m acnet_jax.main --config=configs/rc56_acnet.py --workdir=DIR

Nothing but wiring: flags, logging, several hosts, and turning the errors a
user can fix into one paragraph and an exit code.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from acnet_jax import cli, xla_cpu
from acnet_jax.errors import REPORTED_ERRORS
from acnet_jax.training import cluster, loop, stopping
from acnet_jax.training.config import get_config
from acnet_jax.training.workdir import with_recorded_data

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file, e.g. configs/rc56_acnet.py or configs/rc56.py:acnet_lrs1.',
  lock_config=True,
)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and eval.json.')
flags.DEFINE_enum(
  'mode',
  'train',
  ['train', 'eval'],
  'train: train (resuming from workdir), then evaluate; eval: evaluate the '
  'newest checkpoint in workdir, on the data the run recorded unless '
  '--config.KEY overrides it.',
)
flags.DEFINE_bool(
  'allow_config_change',
  False,
  'Resume a run with a config that changes its '
  'training (batch size, schedule, data, ...): by default that is refused.',
)
flags.DEFINE_bool(
  'show_config',
  False,
  'Print the whole config before the run (it is always written to WORKDIR/config.json).',
)
flags.DEFINE_string(
  'coordinator_address',
  None,
  'host:port of process 0, to run as one of several processes (hosts). '
  "Without it, JAX's own cluster detection supplies it (and the next two) "
  'under Open MPI, SLURM, Cloud TPU (GKE, GCE) and Kubernetes.',
)
flags.DEFINE_integer('num_processes', None, 'Number of processes, with --coordinator_address.')
flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')
flags.DEFINE_bool(
  'distributed',
  None,
  'Call jax.distributed.initialize(); the default is to '
  'do so when --coordinator_address (or --num_processes, --process_id) is '
  'given or the cluster JAX detects runs several processes.',
)
flags.DEFINE_string(
  'cpu_collectives',
  'gloo',
  "Collectives between CPU processes ('gloo' or 'mpi'); only used when the devices are CPUs.",
)
flags.mark_flags_as_required(['config', 'workdir'])


def initialize_distributed() -> None:
  if not cluster.wants_distributed(
    FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
  ):
    return
  jax.config.update('jax_cpu_collectives_implementation', FLAGS.cpu_collectives)
  jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info(
    'Process %d of %d; %d local and %d global devices.',
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with one paragraph instead of a traceback for a config
  file that is missing or does not load, and for an unknown --config.KEY."""
  config_file = config_file_argument(argv)
  if config_file is not None and not os.path.isfile(config_file):
    sys.exit(f'FATAL: no config file {config_file!r}. {list_presets(config_file)}')
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    # An unknown override is a KeyError, or absl's unknown flag where
    # config_flags did not see it in sys.argv (a parse from Python).
    unknown = unknown_override(argv)
    if unknown:
      sys.exit(unknown)
    if isinstance(error, flags.Error):
      # config_flags puts the config file's whole traceback in the message; the
      # last line is the error itself (e.g. the valid try_args).
      sys.exit(f'FATAL: {str(error).strip().splitlines()[-1]}')
    if 'get_config' in str(error):
      sys.exit(
        f'FATAL: the config file {config_file!r} defines no get_config(); a config file '
        'is a Python file whose get_config() returns an ml_collections.ConfigDict.'
      )
    raise
  except Exception as error:  # The config file itself fails: a syntax or runtime error.
    message = str(error).strip().splitlines() or [type(error).__name__]
    sys.exit(
      f'FATAL: the config file {config_file!r} does not load: {type(error).__name__}: {message[-1]}'
    )


def given_config_keys(argv: list[str]) -> frozenset[str]:
  """The KEYs of the --config.KEY=VALUE overrides on the command line."""
  return frozenset(
    arg[len('--config.') :].split('=')[0] for arg in argv if arg.startswith('--config.')
  )


def unknown_override(argv: list[str]) -> str | None:
  """The paragraph for the first --config.KEY=VALUE whose KEY the config does
  not have (with the closest key), or None if every key is known."""
  keys = sorted(flatten_keys(get_config().to_dict()))
  for key in sorted(given_config_keys(argv) - set(keys)):
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f' Did you mean --config.{close[0]}?' if close else ''
    return f'FATAL: --config.{key} names no config key.{hint} Valid keys: {", ".join(keys)}.'
  return None


def config_file_argument(argv: list[str]) -> str | None:
  """The file of --config=FILE[:ARG] (or --config FILE[:ARG]), if given."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg[len('--config=') :]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return value.split(':')[0]
  return None


def list_presets(config_file: str) -> str:
  folder = os.path.dirname(config_file) or '.'
  names = (
    sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f != '__init__.py')
    if os.path.isdir(folder)
    else []
  )
  if not names:
    return (
      'The presets are the files in the configs/ folder of the repository, e.g. '
      'configs/rc56_acnet.py.'
    )
  return f'Config files in {folder}/: {", ".join(names)}.'


def flatten_keys(tree: dict, prefix: str = '') -> list[str]:
  return [
    key
    for name, value in tree.items()
    for key in (
      flatten_keys(value, f'{prefix}{name}.') if isinstance(value, dict) else [f'{prefix}{name}']
    )
  ]


def exit_at_once(signal_number: int, frame: object) -> None:
  """Ctrl-C outside the training loop (loading, compiling, the final test),
  where the loop's own handler is not installed: exit now, saving nothing.

  A handler, not KeyboardInterrupt: Python drops an exception raised inside a
  gc callback (JAX has one) and the run would go on. os.write and os._exit:
  logging's lock may be held by the interrupted code, and XLA may be compiling
  in a thread that would hold a normal exit."""
  os.write(2, b'Interrupted outside the training loop; nothing more was saved.\n')
  os._exit(128 + signal_number)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Before anything starts a JAX backend: XLA reads XLA_FLAGS then.
  xla_cpu.use_project_flags()
  signal.signal(signal.SIGINT, exit_at_once)
  cli.setup_logging()
  try:
    initialize_distributed()
    if jax.process_index() != 0:
      logging.set_verbosity(logging.WARNING)
    if FLAGS.show_config:
      logging.info('Config:\n%s', FLAGS.config)
    if FLAGS.mode == 'train':
      loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.allow_config_change)
    else:
      config = with_recorded_data(FLAGS.config, FLAGS.workdir, given_config_keys(sys.argv))
      loop.evaluate(config, FLAGS.workdir)
  except stopping.TrainingInterrupted as stop:
    logging.warning('%s', stop)
    sys.exit(128 + stop.signal_number)
  except REPORTED_ERRORS as error:
    cli.fail(error)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
