"""The ConvSwitch: the block each kind builds at each site, its checks, and the
table of kinds that fusion recognises."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from acnet_jax.blocks.acb import ACB, ACBOptions, OnlineACB
from acnet_jax.blocks.conv_bn import ConvBias, ConvBN
from acnet_jax.blocks.dbb import DBB, OnlineDBB
from acnet_jax.blocks.repvgg import OnlineRepVGG, RepVGG
from acnet_jax.blocks.switch import (
  BLOCK_KINDS,
  CONV_KINDS,
  TRAINABLE_KINDS,
  TRAINING_BLOCKS,
  ConvSwitch,
)


def test_switch_refuses_bad_options():
  with pytest.raises(ValueError, match="include 'square'"):
    ACBOptions(branches=('ver', 'hor'))
  with pytest.raises(ValueError, match='valid kinds: normal, acnet, dbb, repvgg, deploy'):
    ConvSwitch('acb')
  with pytest.raises(ValueError, match='ACB impl'):
    ACBOptions(impl='fused')
  with pytest.raises(ValueError, match='acb takes an ACBOptions'):
    ConvSwitch('acnet', acb={'impl': 'stacked'})
  with pytest.raises(
    ValueError, match="unknown dtype 'float16'; valid: float32, bfloat16, float64"
  ):
    ConvSwitch('normal', dtype='float16')
  assert ConvSwitch('normal', dtype='bfloat16').dtype == jnp.bfloat16


def test_switch_picks_the_block_of_each_kind():
  assert isinstance(ConvSwitch('acnet')(8, 3), ACB)
  assert isinstance(ConvSwitch('acnet')(8, 1), ConvBN)  # 1x1 convs stay normal.
  assert isinstance(ConvSwitch('acnet')(8, 7), ConvBN)  # So do 7x7 stems.
  assert isinstance(ConvSwitch('acnet')(8, 3, with_bn=False), ACB)
  assert isinstance(ConvSwitch('normal')(8, 3), ConvBN)
  assert isinstance(ConvSwitch('normal')(8, 3, with_bn=False), ConvBias)
  assert isinstance(ConvSwitch('deploy')(8, 3), ConvBias)
  for kind, block in [('dbb', DBB), ('repvgg', RepVGG)]:  # At the ACB's sites.
    assert isinstance(ConvSwitch(kind)(8, 5), block)
    assert isinstance(ConvSwitch(kind)(8, 3, with_bn=False), block)
    assert isinstance(ConvSwitch(kind)(8, 1), ConvBN)
    assert isinstance(ConvSwitch(kind)(8, 7), ConvBN)


def test_online_switch_builds_each_kind_online_at_the_same_sites():
  for kind, block in [('acnet', OnlineACB), ('dbb', OnlineDBB), ('repvgg', OnlineRepVGG)]:
    assert isinstance(ConvSwitch(kind, online=True)(8, 5), block)
    assert isinstance(ConvSwitch(kind, online=True)(8, 3, with_bn=False), block)
    assert isinstance(ConvSwitch(kind, online=True)(8, 1), ConvBN)
  options = ACBOptions(gamma_init=0.5, branches=['square', 'hor'], branch_bn=False)
  acb = ConvSwitch('acnet', acb=options, online=True)(8, 3)
  assert (acb.gamma_init, acb.branches, acb.branch_bn) == (0.5, ('square', 'hor'), False)
  # The kinds without branches build what they always do.
  assert isinstance(ConvSwitch('normal', online=True)(8, 3), ConvBN)
  assert isinstance(ConvSwitch('deploy', online=True)(8, 3), ConvBias)


def test_the_table_names_every_kind_once():
  assert TRAINABLE_KINDS == ('normal', 'acnet', 'dbb', 'repvgg')
  assert CONV_KINDS == (*TRAINABLE_KINDS, 'deploy')
  assert [kind.name for kind in BLOCK_KINDS] == ['ConvBN', 'ACB', 'DBB', 'RepVGG']
  assert {entry.kind.name for entry in TRAINING_BLOCKS.values()} == {'ACB', 'DBB', 'RepVGG'}


def test_every_kind_has_its_own_skeleton():
  """Recognition is by names: a block's skeleton names no child of another kind."""
  for kind in BLOCK_KINDS:
    others = [other for other in BLOCK_KINDS if other is not kind]
    assert all(kind.skeleton not in other.names for other in others), kind.name
