"""ACNet (Ding et al., ICCV 2019) in JAX/Flax: train with ACBs (or DBBs, RepVGG
blocks), deploy one conv.

The packages, from the bottom up: `blocks` (conv blocks and their fuse rules),
`fusion` (fuse_params, to_normal), `models`, `data` (input pipelines),
`training`, `deploy` (export), `analysis`, `benchmarking`; and the commands
`main`, `export`, `analyze`, `benchmark`, `pipeline_benchmark`.
"""

import os

from acnet_jax import xla_cpu

# Before anything below can start a JAX backend (XLA reads XLA_FLAGS then).
xla_cpu.with_project_flags(os.environ)

from acnet_jax import models  # noqa: E402
from acnet_jax.blocks.acb import ACB  # noqa: E402
from acnet_jax.blocks.conv_bn import ConvBias, ConvBN  # noqa: E402
from acnet_jax.blocks.dbb import DBB  # noqa: E402
from acnet_jax.blocks.repvgg import RepVGG  # noqa: E402
from acnet_jax.blocks.switch import ConvSwitch  # noqa: E402
from acnet_jax.fusion import FusionError, acnet_to_normal, fuse_params, to_normal  # noqa: E402
from acnet_jax.models import create_model  # noqa: E402

__all__ = ['ACB', 'DBB', 'ConvBN', 'ConvBias', 'ConvSwitch', 'FusionError', 'RepVGG',
           'acnet_to_normal', 'create_model', 'fuse_params', 'models', 'to_normal']
