"""python -m acnet_jax.convert --checkpoint=FILE --model=NAME --workdir=DIR [--class_names=FILE]

Reads one of the authors' PyTorch checkpoints (DingXiaoH/ACNet or
DingXiaoH/DiverseBranchBlock; .pth or .hdf5, any conv kind they train or
deploy) and writes DIR as a run of `NAME` at step 0, which `main --mode=eval`,
`acnet_jax.export`, `acnet_jax.analyze` and the notebook take
(`acnet_jax.interop.convert`).
"""

from __future__ import annotations

from absl import app, flags, logging

from acnet_jax import cli, xla_cpu
from acnet_jax.errors import InputError
from acnet_jax.interop import convert
from acnet_jax.interop.layouts import MODEL_LAYOUTS
from acnet_jax.training.presets import CIFAR100_SUFFIX


def define_flags() -> None:
  """Only when run as a command: importing the module defines no global flags."""
  flags.DEFINE_string('checkpoint', None, "The authors' .pth or .hdf5 file.")
  flags.DEFINE_enum('model', None, sorted(MODEL_LAYOUTS), 'Our model it is.')
  flags.DEFINE_string('workdir', None, 'The run to write (a new or empty folder).')
  flags.DEFINE_string(
    'class_names',
    None,
    'A file of the class names, one a line, in label '
    "order; default: CIFAR-10's for 10 classes, ImageNet's WordNet ids for "
    '1000.',
  )
  flags.mark_flags_as_required(['checkpoint', 'model', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  xla_cpu.use_project_flags()
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  args = flags.FLAGS
  try:
    converted, config = convert.convert_file(
      args.checkpoint, args.model, args.workdir, args.class_names
    )
  except InputError as error:
    cli.fail(error)
  layout = converted.layout
  preset = f'{config.try_arg}{CIFAR100_SUFFIX if config.dataset == "cifar100" else ""}'
  print(
    f"Converted the authors' {layout.their_model} ({layout.repository}, "
    f'{converted.their_kind}) into {args.workdir}: {converted.model}, conv '
    f'{converted.conv}, {converted.num_classes} classes. Evaluate it with: python -m '
    f'acnet_jax.main --config=configs/{converted.model}.py:{preset} '
    f'--workdir={args.workdir} --mode=eval'
  )


if __name__ == '__main__':
  define_flags()
  app.run(main)
