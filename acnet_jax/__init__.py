"""ACNet (Ding et al., ICCV 2019) in JAX/Flax: train with ACBs (or DBBs, RepVGG
blocks), deploy one conv."""

from acnet_jax import models
from acnet_jax.dbb import DBB
from acnet_jax.fusion import FusionError, acnet_to_normal, fuse_params, to_normal
from acnet_jax.layers import ACB, ConvBias, ConvBN, ConvSwitch
from acnet_jax.models import create_model
from acnet_jax.repvgg import RepVGG

__all__ = ['ACB', 'DBB', 'ConvBN', 'ConvBias', 'ConvSwitch', 'FusionError', 'RepVGG',
           'acnet_to_normal', 'create_model', 'fuse_params', 'models', 'to_normal']
