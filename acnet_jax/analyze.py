"""Why ACNet works, measured on trained runs (the paper's Sec. 4.3-4.4):

    python -m acnet_jax.analyze --workdir=runs/normal --workdir=runs/acnet --output=OUT

OUT gets report.json (every number), tables.md and three PNG figures; see
`acnet_jax.analysis.report`.
"""

from __future__ import annotations

from absl import app, flags

from acnet_jax import cli, xla_cpu
from acnet_jax.analysis.report import analyze
from acnet_jax.errors import InputError


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_multi_string('workdir', None, 'A trained run (repeat the flag for several).')
  flags.DEFINE_string('output', None, 'Folder for report.json, tables.md and the PNG figures.')
  flags.DEFINE_list(
    'labels',
    None,
    'Names of the runs in plots and tables, one per --workdir '
    "(default: the workdirs' folder names).",
  )
  flags.DEFINE_string('data_dir', None, "Overrides the runs' data_dir (data moved since training).")
  flags.mark_flags_as_required(['workdir', 'output'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  xla_cpu.use_project_flags()
  cli.setup_logging()
  args = flags.FLAGS
  try:
    analyze(args.workdir, args.output, args.labels, args.data_dir)
  except InputError as error:
    cli.fail(error)


if __name__ == '__main__':
  define_flags()
  app.run(main)
