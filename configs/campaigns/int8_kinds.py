"""What int8 costs each block kind: Cifar-quick on CIFAR-10 in the later
recipe (configs/cfqkbnc.py:<conv>_cosine) cut to 20 epochs, normal, acnet, dbb
and repvgg, offline and online, seed 0; each finished run is then exported
with its int8 cost (docs/deploy.md):

    python -m acnet_jax.campaign --plan=configs/campaigns/int8_kinds.py \
        --root=runs/int8_kinds --data_dir=/tmp/cifar10
    python -m acnet_jax.export --workdir=runs/int8_kinds/RUN --format=stablehlo,onnx-int8

A run is 7,800 steps (390 an epoch), tested every 5 epochs and saved every
epoch. The cosine schedule runs to 0 over the 20 epochs, so each run ends
trained, not cut off mid-schedule.
"""

from acnet_jax.campaigns.plan import Plan, Run

KINDS = ('normal', 'acnet', 'dbb', 'repvgg')


def get_plan() -> Plan:
  return Plan(
    name='int8_kinds',
    runs=tuple(
      Run(
        f'{conv}{"_online" if online else ""}_seed0',
        f'configs/cfqkbnc.py:{conv}_cosine',
        arm=f'{conv} online' if online else conv,
        seed=0,
        overrides={'online': True} if online else {},
      )
      for online in (False, True)
      for conv in KINDS
      if not (online and conv == 'normal')
    ),
    overrides={
      'dataset': 'image_folder',
      'num_epochs': 20,
      'checkpoint_every_steps': 390,
      'eval_every_epochs': 5,
    },
  )
