"""AlexNet with BN as in the ACNet authors' DBB code (DingXiaoH/DiverseBranchBlock,
alexnet.py): `alexnet`. 61,839,528 parameters in `normal` for 1000 classes.

Differences from torchvision's AlexNet, as in the authors' code: BN after every
conv (no conv bias), conv4 is 384 wide (not 256), no adaptive pool (the
features are flattened as they are, 256 x 6 x 6 for 224-pixel inputs) and
each dropout follows its ReLU.

One difference from the authors' code: their 11x11/4 stem pads 2, the
ConvSwitch pads every KxK conv by K//2 = 5 (the padding that keeps ACB
branches centred). At 224 pixels that gives 56x56 after the stem instead of
55x55; both pool to 27, 13 and 6, so every later shape and the parameter
count are the authors'.

Training needs a dropout key: `model.apply(variables, x, train=True,
rngs={'dropout': key}, mutable=['batch_stats'])`.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.models.common import dense, logits
from acnet_jax.xla_cpu.dispatch import max_pool, relu

WIDTHS = (64, 192, 384, 384, 256)


class AlexNet(nn.Module):
  """conv11x11/4(64) maxpool, conv5x5(192) maxpool, conv3x3(384), conv3x3(384),
  conv3x3(256) maxpool, flatten, dense 4096 x2 (ReLU, dropout 0.5), dense classes.
  Every conv is conv-BN-ReLU; the max-pools are 3x3/2 unpadded, as torch's."""

  num_classes: int
  conv: ConvSwitch
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    pool = lambda x: max_pool(x, (3, 3), (2, 2))
    conv = lambda i, k, strides=1: self.conv(WIDTHS[i - 1], k, strides=strides, name=f'conv{i}')
    x = pool(relu(conv(1, 11, strides=4)(x, train)))
    x = pool(relu(conv(2, 5)(x, train)))
    x = relu(conv(3, 3)(x, train))
    x = relu(conv(4, 3)(x, train))
    x = pool(relu(conv(5, 3)(x, train)))
    x = x.reshape(x.shape[0], -1)
    for name in ('fc1', 'fc2'):
      x = relu(dense(4096, name, self.conv.dtype)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return logits(x, self.num_classes, self.conv.dtype, name='fc3')
