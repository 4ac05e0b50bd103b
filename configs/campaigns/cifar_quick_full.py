"""Cifar-quick on CIFAR-10 at the authors' full schedule: the later recipe
(configs/cfqkbnc_{normal,acnet}.py: batch 128, lr 0.1 cosine to 0 over 150
epochs, no warmup, weight decay 1e-4 on every parameter, 2x lr for biases, ACB
BN scales from 1/3), normal against ACNet, offline and online. The published
figures are the authors' (DingXiaoH/ACNet README, acnet/do_acnet.py).

    python -m acnet_jax.campaign --plan=configs/campaigns/cifar_quick_full.py \
        --root=runs/cifar_quick_full --data_dir=/tmp/cifar10

A run is 58,500 steps (390 a epoch); it is tested every 10 epochs and saved
every epoch.

torch_normal_seed0 and torch_acnet_seed0 train the same recipe in PyTorch
with the authors' modules (benchmarks/authors_reference.py, the torch extra)
on the same images: if they end near the published figures and ours do not,
our implementation differs; if they end where ours do, the data do (issue 37).
Their arms are their own rows of the table, not seeds of ours.
"""

from acnet_jax.campaigns.plan import Plan, Run

NORMAL = 'configs/cfqkbnc_normal.py'
ACNET = 'configs/cfqkbnc_acnet.py'
TORCH_NORMAL = "normal, PyTorch (authors' code)"
TORCH_ACNET = "acnet, PyTorch (authors' code)"
# benchmarks/authors_reference.py's flags: the schedule and test interval of ours.
REFERENCE = {'epochs': 150, 'eval_every_epochs': 10}


def get_plan() -> Plan:
  return Plan(
    name='cifar_quick_full',
    runs=(
      Run('normal_seed0', NORMAL, arm='normal', seed=0),
      Run('acnet_seed0', ACNET, arm='acnet', seed=0),
      # Before the longer runs: under 2 hours on 2 cores, so it finishes even
      # where a machine's checkpoints do not outlive a few hours.
      Run('normal_seed1', NORMAL, arm='normal', seed=1),
      Run(
        'torch_normal_seed0',
        'normal',
        arm=TORCH_NORMAL,
        seed=0,
        overrides=REFERENCE,
        trainer='pytorch_reference',
      ),
      Run(
        'torch_acnet_seed0',
        'acnet',
        arm=TORCH_ACNET,
        seed=0,
        overrides=REFERENCE,
        trainer='pytorch_reference',
      ),
      Run('acnet_seed1', ACNET, arm='acnet', seed=1),
      Run('acnet_online_seed0', ACNET, arm='acnet online', seed=0, overrides={'online': True}),
      Run('normal_seed2', NORMAL, arm='normal', seed=2),
      Run('acnet_seed2', ACNET, arm='acnet', seed=2),
    ),
    overrides={'dataset': 'image_folder', 'checkpoint_every_steps': 390, 'eval_every_epochs': 10},
    # The authors' figures are for their code: the reference arms' too.
    published={'normal': 86.20, 'acnet': 86.87, TORCH_NORMAL: 86.20, TORCH_ACNET: 86.87},
    published_source='DingXiaoH/ACNet README: Cifar-quick on CIFAR-10, 150 epochs',
  )
