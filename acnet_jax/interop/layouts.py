"""Where the authors' code keeps each of our models' variables: the module
name of every conv site, pre-activation BN and dense layer, per repository.

Two repositories build these models, each with its own names:

    acnet   DingXiaoH/ACNet (`base_model/`, `acnet/acnet_builder.py`): cfqkbnc, rc56 (`src56`),
            vc, wrnc16 (`wrnc16plain`), resnet18/34 (`sres18/34`), resnet50 (`sres50`,
            stagewise), mobilenet_v1 (`smi1`); conv kinds normal and acnet, and acnet's
            deploy form (`acnet_fusion.py`)
    dbb     DingXiaoH/DiverseBranchBlock (`convnet_utils.py`): resnet18 (`ResNet-18`),
            resnet50, mobilenet_v1 (`MobileNet`); normal, acnet and dbb, and the deploy
            form of each (`convert.py`)

A site's names inside it depend on the block (`SiteNames`). ACNet's builder
wraps the ACB of a conv-BN-ReLU or BN-ReLU-conv site in a Sequential as `acb`;
a WRN conv is preceded by its own BN at `<site>.bn` (BN-ReLU-conv) or is a
bare `nn.Conv2d` (the stem). RepVGG: neither repository builds these models
with RepVGG blocks, so there is nothing of the authors' to read for it.
"""

from __future__ import annotations

import dataclasses

ParamPath = tuple[str, ...]  # Our keys from the variables' root down to a module.
REPOSITORIES = {'acnet': 'DingXiaoH/ACNet', 'dbb': 'DingXiaoH/DiverseBranchBlock'}


@dataclasses.dataclass(frozen=True)
class Site:
  """A conv site: our module path, the authors' module name, the sub-module
  their builder puts an ACB in (`acb_wrapper`), and where their baseline keeps
  the conv (`conv` -> `<name>.conv.weight`; '' -> `<name>.weight`, a bare conv)."""

  path: ParamPath
  name: str
  acb_wrapper: str = ''
  conv: str = 'conv'


@dataclasses.dataclass(frozen=True)
class Dense:
  """A dense layer; `flattened` = (channels, height, width) of the NCHW map
  that torch flattens into it, where that order differs from our NHWC one."""

  path: ParamPath
  name: str
  flattened: tuple[int, int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Layout:
  """One model as one repository names it."""

  layout: str
  their_model: str
  sites: tuple[Site, ...]
  batch_norms: tuple[tuple[ParamPath, str], ...]  # (our path, their name) of BNs outside sites
  denses: tuple[Dense, ...]

  @property
  def repository(self) -> str:
    return REPOSITORIES[self.layout]


def acnet_cfqkbnc() -> Layout:
  sites = tuple(Site((f'conv{i}',), f'conv{i}', 'acb') for i in (1, 2, 3))
  # conv3's 64 channels at 3x3 (32 px input) are flattened as torch's NCHW.
  denses = (Dense(('fc1',), 'fc1', (64, 3, 3)), Dense(('fc2',), 'fc2'))
  return Layout('acnet', 'cfqkbnc', sites, (), denses)


def acnet_vc() -> Layout:
  sites = tuple(Site((f'conv{i}',), f'stem.conv{i}', 'acb') for i in range(1, 14))
  return Layout('acnet', 'vc', sites, (), (Dense(('fc1',), 'linear1'), Dense(('fc2',), 'linear2')))


def acnet_rc56() -> Layout:
  """SRCNet (`stagewise_resnet.py`): the stem is stage 1's `conv1`; the
  projection of stages 2 and 3 belongs to the stage."""
  sites = [Site(('stem',), 'stage1.conv1')]
  for stage in (1, 2, 3):
    for block in range(1, 10):
      ours, theirs = (f'stage{stage}_block{block}',), f'stage{stage}.block{block - 1}'
      sites += [
        Site((*ours, 'conv1'), f'{theirs}.conv1', 'acb'),
        Site((*ours, 'conv2'), f'{theirs}.conv2'),
      ]
    if stage > 1:
      sites.append(Site((f'stage{stage}_block1', 'shortcut'), f'stage{stage}.projection'))
  return Layout('acnet', 'src56', tuple(sites), (), (Dense(('linear',), 'linear'),))


def acnet_wrnc16() -> Layout:
  """WRNCifarNet (`wrn.py`): BN-ReLU-conv sites, a bare conv stem, `last_bn`."""
  sites = [Site(('stem',), 'conv1', conv='')]
  batch_norms = [(('final_bn',), 'last_bn')]
  for stage in (1, 2, 3):
    for block in (1, 2):
      ours, theirs = (f'stage{stage}_block{block}',), f'stage{stage}.block{block}'
      convs = [('conv1', 'bn1', 'conv1'), ('conv2', 'bn2', 'conv2')]
      if block == 1:
        convs.append(('proj', 'proj_bn', 'proj'))
      for conv, bn, name in convs:
        sites.append(Site((*ours, conv), f'{theirs}.{name}', 'acb'))
        batch_norms.append(((*ours, bn), f'{theirs}.{name}.bn'))
  return Layout(
    'acnet', 'wrnc16plain', tuple(sites), tuple(batch_norms), (Dense(('linear',), 'linear'),)
  )


def resnet_sites(
  blocks: tuple[int, ...], convs: int, block_name: str, shortcut: str, stem: str, relu_wrapper: str
) -> tuple[Site, ...]:
  """ResNets whose blocks are `{stage}.{i}` or `{stage}.block{i}` (`block_name`)
  with conv1..conv{convs}, the last without ReLU; `shortcut` names the
  projection, '{block}' for one in the block, else one of the stage's own."""
  sites = [Site(('stem',), stem)]
  for stage, count in enumerate(blocks, 1):
    for block in range(1, count + 1):
      ours = (f'stage{stage}_block{block}',)
      theirs = f'stage{stage}.{block_name.format(block - 1)}'
      for conv in range(1, convs + 1):
        wrapper = relu_wrapper if conv < convs else ''
        sites.append(Site((*ours, f'conv{conv}'), f'{theirs}.conv{conv}', wrapper))
      projects = block == 1 and (stage > 1 or convs == 3)
      if projects:
        name = f'{theirs}.shortcut' if shortcut == '{block}' else f'stage{stage}.{shortcut}'
        sites.append(Site((*ours, 'shortcut'), name))
  return tuple(sites)


RESNET_BLOCKS = {'resnet18': (2, 2, 2, 2), 'resnet34': (3, 4, 6, 3), 'resnet50': (3, 4, 6, 3)}


def acnet_resnet(model: str) -> Layout:
  """`resnet.py` (18, 34: blocks `stage{s}.{i}` with a `shortcut`) and
  `stagewise_resnet.py` (50: `stage{s}.block{i}`, the stage's `projection`, `fc`)."""
  if model == 'resnet50':
    sites = resnet_sites(RESNET_BLOCKS[model], 3, 'block{}', 'projection', 'conv1', 'acb')
    return Layout('acnet', 'sres50', sites, (), (Dense(('linear',), 'fc'),))
  sites = resnet_sites(RESNET_BLOCKS[model], 2, '{}', '{block}', 'conv1', 'acb')
  return Layout('acnet', f'sres{model[-2:]}', sites, (), (Dense(('linear',), 'linear'),))


def dbb_resnet(model: str) -> Layout:
  """`resnet.py`: the stem in `stage0`, blocks `stage{s}.{i}` with a `shortcut`."""
  convs = 3 if model == 'resnet50' else 2
  sites = resnet_sites(RESNET_BLOCKS[model], convs, '{}', '{block}', 'stage0.conv1', '')
  return Layout('dbb', f'ResNet-{model[-2:]}', sites, (), (Dense(('linear',), 'linear'),))


def mobilenet_sites(relu_wrapper: str) -> tuple[Site, ...]:
  sites = [Site(('stem',), 'conv1', relu_wrapper)]
  for block in range(1, 14):
    sites += [
      Site((f'block{block}', 'depthwise'), f'stem.{block - 1}.depthwise', relu_wrapper),
      Site((f'block{block}', 'pointwise'), f'stem.{block - 1}.pointwise', relu_wrapper),
    ]
  return tuple(sites)


def acnet_mobilenet() -> Layout:
  return Layout('acnet', 'smi1', mobilenet_sites('acb'), (), (Dense(('linear',), 'linear'),))


def dbb_mobilenet() -> Layout:
  return Layout('dbb', 'MobileNet', mobilenet_sites(''), (), (Dense(('linear',), 'linear'),))


# Our model -> its layouts in the authors' repositories.
MODEL_LAYOUTS = {
  'cfqkbnc': (acnet_cfqkbnc,),
  'vc': (acnet_vc,),
  'rc56': (acnet_rc56,),
  'wrnc16': (acnet_wrnc16,),
  'resnet18': (lambda: acnet_resnet('resnet18'), lambda: dbb_resnet('resnet18')),
  'resnet34': (lambda: acnet_resnet('resnet34'),),
  'resnet50': (lambda: acnet_resnet('resnet50'), lambda: dbb_resnet('resnet50')),
  'mobilenet_v1': (acnet_mobilenet, dbb_mobilenet),
}


def layouts_of(model: str) -> tuple[Layout, ...]:
  return tuple(make() for make in MODEL_LAYOUTS[model])
