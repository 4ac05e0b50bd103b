"""Online re-parameterization (Hu et al., CVPR 2022, OREPA): a re-parameterized
block trained at the cost of one conv.

An offline block (ACB, DBB, RepVGG) runs each branch and normalises each with
its own BN. Its online form keeps the branches' convs under their names, drops
their BNs, gives each branch a learnable per-output-channel scale
`<branch>_scale` in place of its BN, and in every step collapses the branches
in weight space, with the algebra that fuses the offline blocks
(`blocks.algebra`: 1xK and Kx1 kernels centred, 1x1-then-KxK composed,
average pooling and the identity as kernels):

    W = sum_b diag(s_b) K_b,    y = BN(conv(x, W))      (BN: the one `bn`)

Fusion folds that one BN into W (`BlockKind.fuse`); the block and the fusion
build W with the same function, the kind's `online_kernel`. Each kind's online
module stands beside its offline one (`acb.OnlineACB`, `dbb.OnlineDBB`,
`repvgg.OnlineRepVGG`): what differs between kinds is only which branch
kernels W sums. What they share is here: declaring a scale, and the one conv
with the one BN.

Initial scales: the kind's BN scale init, `gamma_init` for the ACB (1/3 in the
later recipes) and 1 for DBB and RepVGG, not OREPA's per-branch values (0.25
KxK, 0.25 average pool, 0.5 1x1-then-KxK, 1 1x1), which were set for its own
six-branch block (with prior and depthwise-separable branches this project
does not have) and name nothing for the ACB's 1D branches or RepVGG's
identity. With the kind's values the online block starts as the conv the
offline block starts as in eval mode (the same kernels, each branch scaled as
its BN would scale it; equal to within the BN epsilon), so the two forms
differ only in how they train. In train mode the one BN makes a common factor
of a channel's scales irrelevant (up to its epsilon): only their ratios
matter, and equal scales weigh the branches equally, as equal BN scales do.
The scales are not named `kernel`, so weight decay treats them as it treats
BN scales.

What it costs: the step's activations pass through one KxK conv and one BN, as
the baseline's ConvBN; building W adds work on the weights only (a 3x3 DBB of
64 channels: 9 x 64^3 = 2.4 x 10^6 multiply-adds per composed branch, against
1.5 x 10^8 for its conv on 64 images of 8x8), and the backward pass computes
one kernel gradient, which the chain rule spreads over the branches.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from acnet_jax.blocks.kinds import ONE_BN, BlockVariables
from acnet_jax.blocks.primitives import ConvSiteModule, batch_norm, conv_with_kernel
from acnet_jax.errors import InputError


def branch_scale(block: ConvSiteModule, branch: str, init: float) -> jax.Array:
  """The learnable per-output-channel scale `<branch>_scale` that stands for
  the branch's BN."""
  return block.param(f'{branch}_scale', nn.initializers.constant(init), (block.features,))


def one_conv_then_bn(
  block: ConvSiteModule,
  x: jax.Array,
  train: bool,
  build_kernel: Callable[[BlockVariables], jax.Array],
  use_affine: bool = True,
) -> jax.Array:
  """The online block's computation, once it has declared its branches'
  parameters: the kernel `build_kernel` makes of them, one conv, one BN."""
  if block.kernel_size % 2 != 1:
    raise InputError(f'{type(block).__name__} needs an odd kernel size, got {block.kernel_size}')
  kernel = build_kernel(BlockVariables(block.variables['params'], {}, block.name or ''))
  y = conv_with_kernel(x, kernel, block.strides, block.feature_group_count, block.dtype)
  return batch_norm(ONE_BN, use_affine=use_affine, dtype=block.dtype)(
    y, use_running_average=not train
  )
