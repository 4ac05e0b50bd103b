"""Cifar-quick on CIFAR-10 at the authors' full schedule: the later recipe
(configs/cfqkbnc_{normal,acnet}.py: batch 128, lr 0.1 cosine to 0 over 150
epochs, no warmup, weight decay 1e-4 on every parameter, 2x lr for biases, ACB
BN scales from 1/3), normal against ACNet, offline and online. The published
figures are the authors' (DingXiaoH/ACNet README, acnet/do_acnet.py).

    python -m acnet_jax.campaign --plan=configs/campaigns/cifar_quick_full.py \
        --root=runs/cifar_quick_full --data_dir=/tmp/cifar10

A run is 58,500 steps (390 a epoch); it is tested every 10 epochs and saved
every epoch.
"""

from acnet_jax.campaigns.plan import Plan, Run

NORMAL = 'configs/cfqkbnc_normal.py'
ACNET = 'configs/cfqkbnc_acnet.py'


def get_plan() -> Plan:
  return Plan(
      name='cifar_quick_full',
      runs=(Run('normal_seed0', NORMAL, arm='normal', seed=0),
            Run('acnet_seed0', ACNET, arm='acnet', seed=0),
            Run('acnet_seed1', ACNET, arm='acnet', seed=1),
            Run('normal_seed1', NORMAL, arm='normal', seed=1),
            Run('acnet_online_seed0', ACNET, arm='acnet online', seed=0,
                overrides={'online': True}),
            Run('normal_seed2', NORMAL, arm='normal', seed=2),
            Run('acnet_seed2', ACNET, arm='acnet', seed=2)),
      overrides={'dataset': 'image_folder', 'checkpoint_every_steps': 390,
                 'eval_every_epochs': 10},
      published={'normal': 86.20, 'acnet': 86.87},
      published_source='DingXiaoH/ACNet README: Cifar-quick on CIFAR-10, 150 epochs')
