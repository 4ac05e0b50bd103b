"""Cifar-quick trained in lockstep with the authors' PyTorch code: the same
initial weights (their initialisation, through acnet_jax.convert), the same
augmented batches (ours), each side's own optimizer, schedule, weight decay
and bias learning rate (the later recipe, configs/cfqkbnc_*.py), N steps.

Needs the torch extra; from the repository root:

    python -m benchmarks.lockstep --data_dir=CIFAR10_FOLDER [--steps=50 --convs=normal,acnet]

Prints, per conv kind, a markdown table of each step: both losses and their
difference, the difference of the gradients both compute at their parameters
(and, for scale, their float32 gradients' distance from float64), and how far
apart the two runs' parameters and batch statistics are
(authors_torch/training.py says how each is measured).
"""

from __future__ import annotations

import argparse

from acnet_jax import xla_cpu
from acnet_jax.training import presets
from authors_torch.training import lockstep


def main() -> None:
  xla_cpu.use_project_flags()
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', required=True, help='An image folder: train/<class>/*.')
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--convs', default='normal,acnet')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  for conv in args.convs.split(','):
    config = presets.preset('cfqkbnc', f'{conv}_cosine')
    config.update(dict(dataset='image_folder', data_dir=args.data_dir, seed=args.seed))
    print(
      f'\n{conv} (batch {config.batch_size}, lr {config.learning_rate}, '
      f'{config.num_epochs}-epoch cosine, wd {config.weight_decay})\n'
    )
    print(
      '| step | loss ours | loss theirs | loss difference | gradient difference '
      '| their float32 vs float64 gradient | parameters apart | batch statistics apart |'
    )
    print('|---|---|---|---|---|---|---|---|')
    for r in lockstep(config, args.steps, args.seed):
      print(
        f'| {r.step} | {r.loss_ours:.7f} | {r.loss_theirs:.7f} | {r.loss_difference:.1e} | '
        f'{r.gradient_difference:.1e} | {r.gradient_rounding:.1e} | {r.params_drift:.1e} | '
        f'{r.stats_drift:.1e} |',
        flush=True,
      )


if __name__ == '__main__':
  main()
