"""A campaign: a plan's training runs one after another, resumed where they
stopped, and their results table.

    python -m acnet_jax.campaign --plan=configs/campaigns/cifar_quick_full.py \
        --root=runs/cifar_quick_full --data_dir=/tmp/cifar10
    python -m acnet_jax.campaign --plan=configs/campaigns/cifar_quick_full.py \
        --root=runs/cifar_quick_full --mode=collect --results=results/cifar_quick_full

Run it again after SIGTERM, Ctrl-C, a reboot or a crash: finished runs are
skipped and the unfinished one resumes from its newest checkpoint. `collect`
copies the finished runs' evidence into --results and writes results.json,
table.md and curves.svg there; without --root it rebuilds them from the
evidence already in --results.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from acnet_jax import cli
from acnet_jax.campaigns import results, runner
from acnet_jax.campaigns.plan import load_plan
from acnet_jax.errors import InputError


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_string('plan', None, 'A plan file, e.g. configs/campaigns/cifar_quick_full.py.')
  flags.DEFINE_enum(
    'mode',
    'run',
    ['run', 'collect'],
    'run: train the unfinished runs in order; collect: the results table.',
  )
  flags.DEFINE_string('root', None, "The folder of the runs' workdirs, ROOT/<run name>.")
  flags.DEFINE_string(
    'data_dir',
    None,
    "The image folder or tfds data_dir of the plan's "
    'runs (where it lies on this machine; not part of what training computes).',
  )
  flags.DEFINE_string(
    'results',
    None,
    'collect: the folder for the evidence files, results.json, table.md and curves.svg; '
    'run: the runs whose evidence is already there count as finished.',
  )
  flags.mark_flag_as_required('plan')


def collect(plan_path: str, root: str | None, folder: str | None) -> None:
  if not folder:
    raise InputError('--mode=collect needs --results=FOLDER for the evidence and the table')
  plan = load_plan(plan_path)
  if root:
    copied = results.copy_evidence(plan, root, folder)
    logging.info(
      'Copied the evidence of %d finished runs: %s', len(copied), ', '.join(copied) or 'none'
    )
  report = results.summarize(plan, folder)
  print(results.markdown_table(report['arms']), end='')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  cli.setup_logging()
  args = flags.FLAGS
  try:
    if args.mode == 'collect':
      collect(args.plan, args.root, args.results)
      return
    if not args.root:
      raise InputError('--root=FOLDER is needed: the runs are trained into ROOT/<run name>')
    sys.exit(runner.run_plan(load_plan(args.plan), args.root, args.data_dir, args.results))
  except InputError as error:
    cli.fail(error)


if __name__ == '__main__':
  define_flags()
  app.run(main)
