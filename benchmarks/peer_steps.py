"""The train step both PyTorch comparisons time, on each side: the model at
the project's benchmark batch size, SGD with momentum 0.9 and weight decay, a
batch already in memory (acnet_jax: on device). `benchmarks.pytorch_peer`
and `benchmarks.acnet_over_normal` share it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The project's benchmark batch sizes for these models (Cifar-quick's recipe
# trains at 128, ResNet-56's at 64).
BATCH_SIZES = {'cfqkbnc': 128, 'rc56': 64}
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


def torch_train_step(model: str, conv: str, threads: int) -> tuple[Any, Callable[[], float]]:
  """(the authors' PyTorch model in train mode, a call that performs one SGD
  step on one batch in memory and returns its loss)."""
  import torch

  from authors_torch import acnet_models

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  batch = BATCH_SIZES[model]
  net = acnet_models.build(model, conv, NUM_CLASSES)
  optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  x = torch.randn(batch, IMAGE_SHAPE[2], *IMAGE_SHAPE[:2])
  y = torch.randint(0, NUM_CLASSES, (batch,))
  loss_fn = torch.nn.CrossEntropyLoss()
  net.train()

  def train_step() -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(net(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()

  return net, train_step


def jax_train_step(model: str, conv: str, batch_size: int) -> Callable[[], Any]:
  """acnet_jax's update on one batch already on device (as `acnet_jax.benchmark`
  times it on_device): a call that performs one step and returns its metrics."""
  import jax
  import numpy as np
  from jax.sharding import Mesh

  from acnet_jax.benchmarking.suite import bench_config, update_on_ready_batch
  from acnet_jax.training.trainer import DATA_AXIS, Trainer

  config = bench_config(
    model, conv, 'branches', batch_size, eval_batch_size=batch_size, train_examples=50_000
  )
  mesh = Mesh(np.array(jax.devices()[:1]), (DATA_AXIS,))
  _, _, run = update_on_ready_batch(Trainer(config, mesh))
  return run
