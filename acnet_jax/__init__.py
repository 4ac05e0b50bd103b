"""ACNet (Ding et al., ICCV 2019) in JAX/Flax: train with ACBs, deploy one conv."""

from acnet_jax import models
from acnet_jax.fusion import FusionError, acnet_to_normal, fuse_params
from acnet_jax.layers import ACB, ConvBias, ConvBN, ConvSwitch
from acnet_jax.models import create_model

__all__ = ['ACB', 'ConvBN', 'ConvBias', 'ConvSwitch', 'FusionError', 'acnet_to_normal',
           'create_model', 'fuse_params', 'models']
