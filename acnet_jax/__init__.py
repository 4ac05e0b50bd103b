"""ACNet (Ding et al., ICCV 2019) in JAX/Flax: train with ACBs (or DBBs, RepVGG
blocks), deploy one conv.

The packages, from the bottom up: `blocks` (conv blocks and their fuse rules),
`fusion` (fuse_params, to_normal), `models`, `data` (input pipelines),
`training`, `deploy` (export), `analysis`, `benchmarking`; and the commands
`main`, `export`, `analyze`, `benchmark`, `convert`.
Importing it changes no environment variable and no JAX setting; the commands
set the project's XLA:CPU flag themselves (`xla_cpu.use_project_flags`).
"""

from acnet_jax import models
from acnet_jax.blocks.acb import ACB, ACBOptions
from acnet_jax.blocks.conv_bn import ConvBias, ConvBN
from acnet_jax.blocks.dbb import DBB
from acnet_jax.blocks.repvgg import RepVGG
from acnet_jax.blocks.switch import ConvSwitch
from acnet_jax.fusion import FusionError, fuse_params, to_normal
from acnet_jax.models import create_model

__all__ = [
  'ACB',
  'ACBOptions',
  'DBB',
  'ConvBN',
  'ConvBias',
  'ConvSwitch',
  'FusionError',
  'RepVGG',
  'create_model',
  'fuse_params',
  'models',
  'to_normal',
]
