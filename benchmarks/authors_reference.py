"""The authors' Cifar-quick recipe in PyTorch on an image folder: a campaign's
reference run (configs/campaigns/cifar_quick_full.py), which tells what the
data give from what our implementation gives.

Needs the torch extra; from the repository root:

    python -m benchmarks.authors_reference --workdir=DIR --arm=normal|acnet --seed=S \\
        --data_dir=FOLDER [--epochs=150 --eval_every_epochs=10 --batch_size=128 --threads=2]

What runs is theirs, through the project's mirror of their code:
- the model: cfqkbnc with or without ACBs (authors_torch/acnet_models.py),
  torch's default initialisation after torch.manual_seed(seed), ACB BN scales
  0.333, BN eps 1e-5 and momentum 0.1, float32;
- the optimizer: ndp_train.py's (authors_torch/training.py
  sgd_optimizer: SGD momentum 0.9 in torch's form, weight decay 1e-4 on every
  parameter, twice the rate for names containing 'bias') with CosineAnnealingLR
  from 0.1 to 0 over all iterations, stepped after each, no warmup;
- the data: data/data_factory.py's transforms (as
  benchmarks/augmentation_vs_torchvision.py builds them: Pad(4), RandomCrop(32),
  RandomHorizontalFlip, ToTensor, Normalize(0.5, 0.5)) on FOLDER/train and
  FOLDER/val (else test), decoded once into memory by torchvision's ImageFolder
  loader (PIL) and made PIL images again per draw, as torchvision's CIFAR10 does.
An epoch is (train images // batch) iterations over a fresh permutation, the
last partial batch dropped. The test split is evaluated in eval mode every
--eval_every_epochs epochs and after the last, by the trained model and by the
deploy model of the authors' acnet_fusion.convert_acnet_weights (for normal,
the same weights).

Resumable: after every epoch a checkpoint (model, optimizer, scheduler,
epoch) is written to a temporary folder and renamed to checkpoints/<step>
(only the newest is kept); a start resumes from it. An epoch's permutation and
augmentation draws are drawn from generators seeded by (seed, epoch) alone, so
no random state crosses an epoch's end: a resumed run continues exactly as an
uninterrupted one (with the same threads on the same machine). SIGTERM or
SIGINT stops it within an iteration, losing the epoch in progress, and it
exits 128 + the signal, as acnet_jax.main does.

What it writes into DIR is the layout of acnet_jax.main's workdir that the
campaign reads (acnet_jax/campaigns/runner.py, results.py):
  config.json     the recipe, marked "trainer": "pytorch_reference"
  metrics.jsonl   per epoch {step, epoch, train_loss, train_top1, train_lr}; per test
                  {step, test_top1, test_top5, test_loss, test_fused_*}, fractions
  checkpoints/<step>/state.pt
  deploy/<step>/deploy.hdf5   the deploy weights as the authors save them (utils/misc.py)
  eval.json       the last test, as acnet_jax.main's: top1, fused_top1, ...; written last
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from acnet_jax.campaigns.runner import newest_checkpoint_step
from acnet_jax.data.image_folder import eval_split_of
from acnet_jax.errors import InputError
from acnet_jax.training.lock import WorkdirLock

ARMS = ('normal', 'acnet')
MODEL = 'cfqkbnc'
GAMMA_INIT = 0.333
LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
IMAGE_SHAPE = (32, 32, 3)
# trainer.FUSION_TOLERANCE['float32']: the largest relative logit difference
# between the trained and the fused model that counts as a match.
FUSION_TOLERANCE = 1e-3
STATE_FILE = 'state.pt'
DEPLOY_FILE = 'deploy.hdf5'
# config.json keys that do not change what training computes: a resume may differ in them.
NOT_TRAJECTORY = ('data_dir', 'threads', 'torch_version', 'torchvision_version')

log = logging.getLogger('authors_reference')


class Stopped(Exception):
  """SIGTERM or SIGINT arrived; the run stops at the next check."""

  def __init__(self, signal_number: int):
    super().__init__(signal.Signals(signal_number).name)
    self.signal_number = signal_number


class StopFlag:
  """Notes SIGTERM/SIGINT; `check()` raises Stopped once one came. Checked
  at every image decoded, every iteration and every test batch."""

  def __init__(self):
    self.signal_number: int | None = None

  def install(self) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
      signal.signal(sig, self.note)

  def note(self, signal_number: int, frame: object) -> None:
    self.signal_number = signal_number

  def check(self) -> None:
    if self.signal_number is not None:
      raise Stopped(self.signal_number)


def parser() -> argparse.ArgumentParser:
  flags = argparse.ArgumentParser(
    prog='python -m benchmarks.authors_reference', description=__doc__.split('\n\n')[0]
  )
  flags.add_argument('--workdir', required=True, help='Where the run is written (and resumed).')
  flags.add_argument('--arm', required=True, choices=ARMS)
  flags.add_argument('--seed', type=int, default=0)
  flags.add_argument(
    '--data_dir',
    required=True,
    help='An image folder of 32x32 images: train/<class>/*, val/ or test/.',
  )
  flags.add_argument('--epochs', type=int, default=150)
  flags.add_argument('--eval_every_epochs', type=int, default=10)
  flags.add_argument('--batch_size', type=int, default=128)
  flags.add_argument('--eval_batch_size', type=int, default=500)
  flags.add_argument('--threads', type=int, default=2, help='torch.set_num_threads.')
  return flags


# The flags the campaign's runner sets from the run itself (plan.reference_arguments).
RUN_FLAGS = ('help', 'workdir', 'arm', 'seed', 'data_dir')


def flag_names() -> set[str]:
  """The flags a plan's reference run may set (its overrides)."""
  return {action.dest for action in parser()._actions if action.dest not in RUN_FLAGS}


def epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
  """(the permutation's seed, the augmentation's seed) of an epoch (0-based)."""
  order, augment = np.random.SeedSequence([seed, epoch]).generate_state(2)
  return int(order), int(augment)


# ---------------------------------------------------------------------- data


class Split:
  """A split decoded into memory: uint8 images (n, 32, 32, 3) and int64 labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str]):
    self.images, self.labels, self.classes = images, labels, classes

  def batch(self, indices: np.ndarray, transform) -> tuple[Any, Any]:
    """(images (b, 3, 32, 32), labels) of the transform of each image, in order."""
    import torch
    from PIL import Image

    x = torch.stack([transform(Image.fromarray(self.images[i])) for i in indices])
    return x, torch.from_numpy(self.labels[indices])


def load_split(folder: str, stop: StopFlag) -> Split:
  from torchvision import datasets

  dataset = datasets.ImageFolder(folder)
  log.info('Decoding the %d images of %s into memory.', len(dataset.samples), folder)
  images = []
  for path, _ in dataset.samples:
    stop.check()
    images.append(np.asarray(dataset.loader(path)))
    if images[-1].shape != IMAGE_SHAPE:
      raise InputError(
        f'{path} is {images[-1].shape[1]}x{images[-1].shape[0]}; the recipe '
        f'is for {IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]} images (CIFAR)'
      )
  return Split(np.stack(images), np.asarray(dataset.targets, np.int64), dataset.classes)


# --------------------------------------------------------------- the recipe


def run_config(
  args: argparse.Namespace, train: Split, test: Split, eval_split: str, steps_per_epoch: int
) -> dict[str, Any]:
  """config.json: the recipe's values, in acnet_jax's names where it has them."""
  import torch
  import torchvision

  return {
    'trainer': 'pytorch_reference',
    'implementation': "DingXiaoH/ACNet's cfqkbnc, ndp_train.py optimizer and schedule and "
    'data_factory.py transforms, through authors_torch and '
    'benchmarks/augmentation_vs_torchvision.py, in PyTorch',
    'torch_version': torch.__version__,
    'torchvision_version': torchvision.__version__,
    'model': MODEL,
    'conv': args.arm,
    'seed': args.seed,
    'num_epochs': args.epochs,
    'steps_per_epoch': steps_per_epoch,
    'batch_size': args.batch_size,
    'eval_batch_size': args.eval_batch_size,
    'eval_every_epochs': args.eval_every_epochs,
    'learning_rate': LEARNING_RATE,
    'lr_schedule': 'cosine',
    'warmup_epochs': 0,
    'momentum': MOMENTUM,
    'weight_decay': WEIGHT_DECAY,
    'weight_decay_on_bn_and_bias': True,
    'bias_lr_factor': 2.0,
    'acb': {'gamma_init': GAMMA_INIT if args.arm == 'acnet' else None},
    'bn_eps': 1e-5,
    'bn_momentum': 0.1,
    'init': 'torch default',
    'augment': 'Pad(4), RandomCrop(32), RandomHorizontalFlip()',
    'pixel_mean': [0.5] * 3,
    'pixel_std': [0.5] * 3,
    'dtype': 'float32',
    'dataset': 'image_folder',
    'data_dir': args.data_dir,
    'threads': args.threads,
    'recorded': {
      'input_shape': list(IMAGE_SHAPE),
      'class_names': list(train.classes),
      'train_examples': len(train.labels),
      'test_examples': len(test.labels),
      'eval_split': eval_split,
    },
  }


def trajectory(config: dict[str, Any]) -> dict[str, Any]:
  return {key: value for key, value in config.items() if key not in NOT_TRAJECTORY}


def write_json(path: str, value: Any) -> None:
  """Whole or not at all: a temporary file renamed over the path."""
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=2)
  os.replace(path + '.tmp', path)


def append_metrics(workdir: str, entry: dict[str, Any]) -> None:
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write(json.dumps(entry) + '\n')


def model_and_optimizer(arm: str, num_classes: int, total_steps: int, seed: int):
  """(the model, its optimizer, its schedule) as the authors start them."""
  import torch

  from authors_torch import acnet_models
  from authors_torch.training import sgd_optimizer

  torch.manual_seed(seed)
  net = acnet_models.build(MODEL, arm, num_classes, GAMMA_INIT if arm == 'acnet' else None)
  optimizer = sgd_optimizer(net, LEARNING_RATE, WEIGHT_DECAY, MOMENTUM)
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0)
  return net, optimizer, scheduler


def train_step(net, optimizer, scheduler, criterion, x, y) -> tuple[float, int]:
  """One iteration; (its loss, how many of the batch it classified right)."""
  logits = net(x)
  loss = criterion(logits, y)
  optimizer.zero_grad()
  loss.backward()
  optimizer.step()
  scheduler.step()
  return loss.item(), int((logits.argmax(1) == y).sum())


def train_epoch(
  net, optimizer, scheduler, train: Split, epoch: int, seed: int, batch_size: int, stop: StopFlag
) -> dict[str, float]:
  import torch
  from torch import nn

  from benchmarks.augmentation_vs_torchvision import their_train_transform

  steps = len(train.labels) // batch_size
  order_seed, augment_seed = epoch_seeds(seed, epoch)
  order = torch.randperm(
    len(train.labels), generator=torch.Generator().manual_seed(order_seed)
  ).numpy()
  torch.manual_seed(augment_seed)  # The transforms draw from torch's global generator.
  transform, criterion = their_train_transform(), nn.CrossEntropyLoss()
  net.train()
  loss_sum, correct = 0.0, 0
  for i in range(steps):
    stop.check()
    lr = optimizer.param_groups[0]['lr']  # The base rate (the first parameter is no bias).
    loss, right = train_step(
      net,
      optimizer,
      scheduler,
      criterion,
      *train.batch(order[i * batch_size : (i + 1) * batch_size], transform),
    )
    loss_sum, correct = loss_sum + loss, correct + right
  return {
    'train_loss': loss_sum / steps,
    'train_top1': correct / (steps * batch_size),
    'train_lr': lr,
  }


def deploy_model(net, arm: str, num_classes: int):
  """(the deploy model in eval mode, its weights) by the authors' convert_acnet_weights."""
  from authors_torch import acnet_models, saving

  weights = saving.convert_acnet_weights(saving.numpy_state_dict(net))
  deploy = acnet_models.build(MODEL, 'acnet_deploy' if arm == 'acnet' else 'normal', num_classes)
  return saving.load_numpy_state_dict(deploy, weights).eval(), weights


def evaluate(net, arm: str, test: Split, batch_size: int, stop: StopFlag) -> dict[str, Any]:
  """acnet_jax's eval.json numbers on the test split: the trained model's and
  the fused one's mean loss, top-1 and top-k, and their logits' largest
  difference relative to the largest trained logit of its batch."""
  import torch
  import torch.nn.functional as F

  from benchmarks.augmentation_vs_torchvision import their_eval_transform

  num_classes = len(test.classes)
  deploy, _ = deploy_model(net, arm, num_classes)
  transform, k = their_eval_transform(), min(5, num_classes)
  net.eval()
  sums = dict.fromkeys(
    [f'{p}{name}' for p in ('', 'fused_') for name in ('top1', f'top{k}', 'loss')], 0.0
  )
  worst = 0.0
  with torch.no_grad():
    for start in range(0, len(test.labels), batch_size):
      stop.check()
      x, y = test.batch(np.arange(start, min(start + batch_size, len(test.labels))), transform)
      logits = {'': net(x), 'fused_': deploy(x)}
      for prefix, z in logits.items():
        top = z.topk(k, 1).indices
        sums[f'{prefix}top1'] += int((top[:, 0] == y).sum())
        sums[f'{prefix}top{k}'] += int((top == y[:, None]).any(1).sum())
        sums[f'{prefix}loss'] += F.cross_entropy(z, y, reduction='sum').item()
      scale = max(logits[''].abs().max().item(), 1e-12)
      worst = max(worst, (logits[''] - logits['fused_']).abs().max().item() / scale)
  n = len(test.labels)
  return {
    'num_examples': n,
    **{key: value / n for key, value in sums.items()},
    'fused_max_rel_diff': worst,
    'fused_matches': worst <= FUSION_TOLERANCE,
  }


# --------------------------------------------------------------- checkpoints


def commit_folder(temporary: str, final: str) -> None:
  """Renames a written folder to its final name (replacing one there)."""
  if os.path.exists(final):
    shutil.rmtree(final)
  os.replace(temporary, final)


def save_checkpoint(workdir: str, step: int, epoch: int, net, optimizer, scheduler) -> None:
  """checkpoints/<step>/state.pt, written in checkpoints/<step>.partial and
  renamed; then every other checkpoint is removed."""
  import torch

  directory = os.path.join(workdir, 'checkpoints')
  final = os.path.join(directory, str(step))
  temporary = final + '.partial'
  shutil.rmtree(temporary, ignore_errors=True)
  os.makedirs(temporary)
  path = os.path.join(temporary, STATE_FILE)
  torch.save(
    {
      'model': net.state_dict(),
      'optimizer': optimizer.state_dict(),
      'scheduler': scheduler.state_dict(),
      'epoch': epoch,
      'step': step,
    },
    path,
  )
  with open(path, 'rb') as f:
    os.fsync(f.fileno())
  commit_folder(temporary, final)
  for name in os.listdir(directory):
    if name != str(step):
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def restore_checkpoint(workdir: str, step: int, net, optimizer, scheduler) -> int:
  """Loads checkpoints/<step> into the model, optimizer and schedule; returns
  the number of epochs it had trained."""
  import torch

  state = torch.load(os.path.join(workdir, 'checkpoints', str(step), STATE_FILE))
  net.load_state_dict(state['model'])
  optimizer.load_state_dict(state['optimizer'])
  scheduler.load_state_dict(state['scheduler'])
  return state['epoch']


def save_deploy(workdir: str, step: int, net, arm: str, num_classes: int) -> None:
  """deploy/<step>/deploy.hdf5: the deploy weights as the authors' save_hdf5
  writes them (what acnet_jax.convert reads)."""
  from authors_torch import saving

  final = os.path.join(workdir, 'deploy', str(step))
  temporary = final + '.partial'
  shutil.rmtree(temporary, ignore_errors=True)
  os.makedirs(temporary)
  saving.save_hdf5(deploy_model(net, arm, num_classes)[1], os.path.join(temporary, DEPLOY_FILE))
  commit_folder(temporary, final)


# ------------------------------------------------------------------ the run


def start_config(workdir: str, config: dict[str, Any]) -> None:
  """Writes config.json, or refuses a workdir whose run has another recipe."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    write_json(path, config)
    return
  with open(path) as f:
    recorded = json.load(f)
  old, new = trajectory(recorded), trajectory(config)
  changes = {
    key: (old.get(key), new.get(key))
    for key in old.keys() | new.keys()
    if old.get(key) != new.get(key)
  }
  if changes:
    listed = '; '.join(f'{key}: {a!r} -> {b!r}' for key, (a, b) in sorted(changes.items()))
    raise InputError(
      f'{workdir} holds a run of another recipe ({listed}); give this one '
      'another --workdir. Nothing was changed.'
    )
  for key in NOT_TRAJECTORY:
    if recorded.get(key) != config.get(key):
      log.warning(
        'Resuming with %s %r (the run started with %r).', key, config.get(key), recorded.get(key)
      )


def train_and_evaluate(args: argparse.Namespace, stop: StopFlag) -> dict[str, Any]:
  import torch

  torch.set_num_threads(args.threads)
  eval_split = eval_split_of(args.data_dir)
  train = load_split(os.path.join(args.data_dir, 'train'), stop)
  test = load_split(os.path.join(args.data_dir, eval_split), stop)
  if train.classes != test.classes:
    raise InputError(f'{args.data_dir}: train/ and {eval_split}/ hold other classes')
  steps_per_epoch = len(train.labels) // args.batch_size
  if steps_per_epoch == 0:
    raise InputError(f'{len(train.labels)} training images make no batch of {args.batch_size}')
  start_config(args.workdir, run_config(args, train, test, eval_split, steps_per_epoch))
  num_classes = len(train.classes)
  net, optimizer, scheduler = model_and_optimizer(
    args.arm, num_classes, args.epochs * steps_per_epoch, args.seed
  )
  epoch, step = 0, newest_checkpoint_step(args.workdir)
  if step is not None:
    epoch = restore_checkpoint(args.workdir, step, net, optimizer, scheduler)
    log.info('Resuming from the checkpoint of epoch %d (step %d).', epoch, step)
  result = None
  while epoch < args.epochs:
    started = time.perf_counter()
    metrics = train_epoch(net, optimizer, scheduler, train, epoch, args.seed, args.batch_size, stop)
    epoch += 1
    step = epoch * steps_per_epoch
    log.info(
      'epoch %d/%d (step %d): train loss %.4f, top-1 %.4f, lr %.6f, %.1f s',
      epoch,
      args.epochs,
      step,
      metrics['train_loss'],
      metrics['train_top1'],
      metrics['train_lr'],
      time.perf_counter() - started,
    )
    entries = [{'step': step, 'epoch': epoch, **metrics}]
    if epoch % args.eval_every_epochs == 0 or epoch == args.epochs:
      result = {'step': step, **evaluate(net, args.arm, test, args.eval_batch_size, stop)}
      log.info('test top-1 %.4f, fused %.4f', result['top1'], result['fused_top1'])
      entries.append(
        {'step': step, **{f'test_{key}': value for key, value in result.items() if key != 'step'}}
      )
    for entry in entries:  # Before the checkpoint: a step logged twice keeps its last value.
      append_metrics(args.workdir, entry)
    save_checkpoint(args.workdir, step, epoch, net, optimizer, scheduler)
  if result is None:  # Resumed after the last checkpoint, before eval.json.
    result = {'step': step, **evaluate(net, args.arm, test, args.eval_batch_size, stop)}
  save_deploy(args.workdir, step, net, args.arm, num_classes)
  write_json(os.path.join(args.workdir, 'eval.json'), result)
  return result


def main(argv: Sequence[str] | None = None) -> None:
  args = parser().parse_args(argv)
  logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format='%(asctime)s %(name)s: %(message)s'
  )
  stop = StopFlag()
  stop.install()
  lock = WorkdirLock(args.workdir)
  try:
    lock.acquire()
    result = train_and_evaluate(args, stop)
  except InputError as error:  # WorkdirBusy too.
    log.error('%s', error)
    sys.exit(1)
  except Stopped as stopped:
    step = newest_checkpoint_step(args.workdir)
    saved = (
      'no checkpoint was saved yet'
      if step is None
      else f'the checkpoint of step {step} is in {args.workdir}/checkpoints'
    )
    log.warning(
      'Stopped by %s; %s (the epoch in progress is lost). Run the same command again to resume.',
      stopped,
      saved,
    )
    sys.exit(128 + stopped.signal_number)
  finally:
    lock.release()
  print(json.dumps(result))


if __name__ == '__main__':
  main()
