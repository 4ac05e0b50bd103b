"""The authors' state dicts as this project's variables, and as a run's workdir.

`convert_state_dict(state, model)` recognises which of the authors' models and
conv kinds `state` is (its layout, `layouts.py`, and its block names) and
returns our params and batch statistics of `model` in the matching kind:

    their kind      blocks (keys under a conv site)                 our kind
    normal          conv, bn                                        normal
    acnet           square_conv, square_bn, ver_*, hor_*            acnet
    dbb             dbb_origin, dbb_1x1, dbb_avg, dbb_1x1_kxk       dbb
    *_deploy        fused_conv (ACNet), dbb_reparam or conv with    normal: a conv+BN whose BN
                    a bias (DBB's convert.py)                       adds the bias (as to_normal)

Every key must be used and every variable filled, with the shape the model
needs (torch's OIHW kernels become HWIO, Linear weights are transposed and,
after a flatten, reordered from NCHW to NHWC); `num_batches_tracked` is
read past. Anything else is an InputError naming the first key at fault, and
nothing is written. Differences the authors' code has from ours, handled here:
their WRN's BN-ReLU-conv and stem convs have no bias (ours in `normal` do:
it is set to zero); their running variances are PyTorch's (unbiased
updates), which eval mode uses as they are.

`write_converted_run` writes what `--mode=eval`, `acnet_jax.export`,
`acnet_jax.analyze` and the notebook read: config.json (the model's preset,
its input shape and class names) and a step-0 checkpoint of the train state.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from acnet_jax import models
from acnet_jax.blocks.primitives import BN_EPSILON
from acnet_jax.blocks.switch import uses_block
from acnet_jax.errors import InputError
from acnet_jax.interop.files import StateDict, read_state_dict
from acnet_jax.interop.layouts import (
  MODEL_LAYOUTS,
  Dense,
  Layout,
  ParamPath,
  Site,
  layouts_of,
)
from acnet_jax.training import checkpointing, optim, presets, steps
from acnet_jax.training import workdir as runs

# The conv kinds of the authors' checkpoints each repository has, and ours for each.
CHECKPOINT_KINDS = {
  'acnet': ('normal', 'acnet', 'acnet_deploy'),
  'dbb': ('normal', 'normal_deploy', 'acnet', 'acnet_deploy', 'dbb', 'dbb_deploy'),
}
OUR_KIND = {
  'normal': 'normal',
  'acnet': 'acnet',
  'dbb': 'dbb',
  'normal_deploy': 'normal',
  'acnet_deploy': 'normal',
  'dbb_deploy': 'normal',
}
# A key part only checkpoints of that kind have, in the order they are tested.
KIND_MARKERS = (
  ('.dbb_reparam.', 'dbb_deploy'),
  ('.dbb_origin.', 'dbb'),
  ('.fused_conv.', 'acnet_deploy'),
  ('.square_conv.', 'acnet'),
)
# Our child of a training-time block -> the authors' module inside their block.
ACB_NAMES = {
  'square': 'square_conv',
  'square_bn': 'square_bn',
  'ver': 'ver_conv',
  'ver_bn': 'ver_bn',
  'hor': 'hor_conv',
  'hor_bn': 'hor_bn',
}
DBB_NAMES = {
  'origin': 'dbb_origin.conv',
  'origin_bn': 'dbb_origin.bn',
  '1x1': 'dbb_1x1.conv',
  '1x1_bn': 'dbb_1x1.bn',
  'avg_conv': 'dbb_avg.conv',
  'avg_conv_bn': 'dbb_avg.bn.bn',
  'avg_bn': 'dbb_avg.avgbn',
  '1x1_kxk_idconv1': 'dbb_1x1_kxk.idconv1',
  '1x1_kxk_conv1': 'dbb_1x1_kxk.conv1',
  '1x1_kxk_bn1': 'dbb_1x1_kxk.bn1.bn',
  '1x1_kxk_conv2': 'dbb_1x1_kxk.conv2',
  '1x1_kxk_bn2': 'dbb_1x1_kxk.bn2',
}
CONV_BN_NAMES = {'conv': 'conv', 'bn': 'bn'}
# The deploy form's one conv (with its bias) in the authors' blocks.
FUSED_CONV = {'acnet_deploy': 'fused_conv', 'dbb_deploy': 'dbb_reparam'}
BN_KEYS = {
  'weight': ('params', 'scale'),
  'bias': ('params', 'bias'),
  'running_mean': ('batch_stats', 'mean'),
  'running_var': ('batch_stats', 'var'),
}
BN_COUNTER = 'num_batches_tracked'  # Training bookkeeping; eval mode does not read it.
# ACNet's engine adds the layer widths of a pruned model to its .hdf5; the shapes say as much.
WIDTHS_KEY = 'deps'
CIFAR10_CLASSES = (
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
)
IMAGENET_SIZE, CIFAR_SIZE = 224, 32

Leaf = tuple[str, ...]  # ('params' or 'batch_stats', *our module path, variable name)


@dataclasses.dataclass(frozen=True)
class Keyed:
  """Our variable `leaf` is `to_ours(their array)`; their array has `shape`."""

  leaf: Leaf
  shape: tuple[int, ...]
  to_ours: Callable[[np.ndarray], np.ndarray] = lambda value: value


@dataclasses.dataclass
class Plan:
  """How one layout and kind fills our model's variables: from their keys, or
  with constants where their model has nothing (a zero bias, an identity BN)."""

  keyed: dict[str, Keyed] = dataclasses.field(default_factory=dict)
  constants: dict[Leaf, np.ndarray] = dataclasses.field(default_factory=dict)
  ignored: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class Converted:
  """Our model's variables from one of the authors' checkpoints."""

  model: str
  conv: str  # Our conv kind.
  num_classes: int
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  layout: Layout
  their_kind: str


def input_shape(model: str) -> tuple[int, int, int]:
  size = IMAGENET_SIZE if model in presets.IMAGENET_MODELS else CIFAR_SIZE
  return size, size, 3


@functools.cache
def abstract_variables(model: str, conv: str, num_classes: int) -> dict[str, Any]:
  """Our model's variables as shapes (nothing computed)."""
  module = models.create_model(model, conv, num_classes)
  shape = (1, *input_shape(model))
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))


def subtree(variables: Mapping[str, Any], collection: str, path: ParamPath) -> Mapping[str, Any]:
  node = variables.get(collection, {})
  for key in path:
    node = node.get(key, {})
  return node


def conv_to_ours(kernel: np.ndarray) -> np.ndarray:
  return kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO.


def conv_shape(hwio: tuple[int, ...]) -> tuple[int, ...]:
  height, width, per_group_in, out = hwio
  return out, per_group_in, height, width


class Planner:
  """Builds the Plan of one layout and kind for our model's abstract variables."""

  def __init__(self, variables: Mapping[str, Any], their_kind: str, layout: str):
    self.variables = variables
    self.their_kind = their_kind
    self.layout = layout
    self.plan = Plan()

  def shape(self, leaf: Leaf) -> tuple[int, ...]:
    return tuple(subtree(self.variables, leaf[0], leaf[1:-1])[leaf[-1]].shape)

  def conv(self, key: str, path: ParamPath) -> None:
    leaf = ('params', *path, 'kernel')
    self.plan.keyed[key] = Keyed(leaf, conv_shape(self.shape(leaf)), conv_to_ours)

  def batch_norm(self, name: str, path: ParamPath) -> None:
    for their, (collection, ours) in BN_KEYS.items():
      leaf = (collection, *path, ours)
      self.plan.keyed[f'{name}.{their}'] = Keyed(leaf, self.shape(leaf))
    self.plan.ignored.add(f'{name}.{BN_COUNTER}')

  def bias(self, key: str, leaf: Leaf) -> None:
    self.plan.keyed[key] = Keyed(leaf, self.shape(leaf))

  def constant(self, leaf: Leaf, value: float) -> None:
    self.plan.constants[leaf] = np.full(self.shape(leaf), value, np.float32)

  def identity_batch_norm(self, path: ParamPath) -> None:
    """A BN that adds only its bias: scale 1, mean 0, var 1 - eps (as to_normal)."""
    self.constant(('params', *path, 'scale'), 1.0)
    self.constant(('batch_stats', *path, 'mean'), 0.0)
    self.constant(('batch_stats', *path, 'var'), 1.0 - BN_EPSILON)

  def site(self, site: Site) -> None:
    children = set(subtree(self.variables, 'params', site.path))
    skeleton = next(c for c in ('conv', 'square', 'origin') if c in children)
    kernel_size = self.shape(('params', *site.path, skeleton, 'kernel'))[0]
    deploy = self.their_kind.endswith('_deploy')
    if not uses_block(kernel_size) or self.their_kind in ('normal', 'normal_deploy'):
      if deploy and self.layout == 'dbb':  # DBB's convert.py fuses every conv-BN too.
        self.fused(site, f'{site.name}.conv')
      else:
        self.baseline(site, children)
    elif deploy:
      wrapper = site.acb_wrapper if self.their_kind == 'acnet_deploy' else ''
      self.fused(site, '.'.join(filter(None, (site.name, wrapper, FUSED_CONV[self.their_kind]))))
    elif self.their_kind == 'acnet':
      self.block(site.path, '.'.join(filter(None, (site.name, site.acb_wrapper))), ACB_NAMES)
    else:
      self.block(site.path, site.name, DBB_NAMES)

  def baseline(self, site: Site, children: set[str]) -> None:
    """Their conv without bias, then their BN where ours has one; where ours
    is a conv with bias (a pre-activation site), the bias is zero."""
    if 'bn' in children:
      self.block(site.path, site.name, CONV_BN_NAMES)
      return
    self.conv('.'.join(filter(None, (site.name, site.conv, 'weight'))), (*site.path, 'conv'))
    self.constant(('params', *site.path, 'conv', 'bias'), 0.0)

  def block(self, path: ParamPath, name: str, names: Mapping[str, str]) -> None:
    """A training-time block: each of our children from their module of the table."""
    params = subtree(self.variables, 'params', path)
    stats = subtree(self.variables, 'batch_stats', path)
    for child in sorted(set(params) | set(stats)):
      their = f'{name}.{names[child]}'
      if child in stats:
        self.batch_norm(their, (*path, child))
      else:
        self.conv(f'{their}.weight', (*path, child))

  def fused(self, site: Site, name: str) -> None:
    """Their one conv with a bias, as our baseline site: a conv+BN whose BN adds
    the bias, or a conv with a bias at a pre-activation site."""
    self.conv(f'{name}.weight', (*site.path, 'conv'))
    if 'bn' in subtree(self.variables, 'params', site.path):
      self.bias(f'{name}.bias', ('params', *site.path, 'bn', 'bias'))
      self.identity_batch_norm((*site.path, 'bn'))
    else:
      self.bias(f'{name}.bias', ('params', *site.path, 'conv', 'bias'))

  def dense(self, dense: Dense) -> None:
    leaf = ('params', *dense.path, 'kernel')
    features_in, features_out = self.shape(leaf)
    if dense.flattened is None:
      to_ours = lambda weight: weight.T
    else:
      channels, height, width = dense.flattened
      to_ours = lambda weight: (
        weight.reshape(features_out, channels, height, width)
        .transpose(2, 3, 1, 0)
        .reshape(features_in, features_out)
      )
    self.plan.keyed[f'{dense.name}.weight'] = Keyed(leaf, (features_out, features_in), to_ours)
    self.bias(f'{dense.name}.bias', ('params', *dense.path, 'bias'))


def make_plan(layout: Layout, their_kind: str, variables: Mapping[str, Any]) -> Plan:
  planner = Planner(variables, their_kind, layout.layout)
  for site in layout.sites:
    planner.site(site)
  for path, name in layout.batch_norms:
    planner.batch_norm(name, path)
  for dense in layout.denses:
    planner.dense(dense)
  check_plan_covers(planner.plan, variables, layout)
  return planner.plan


def leaves_of(variables: Mapping[str, Any]) -> set[Leaf]:
  return {
    tuple(str(k.key) for k in path)
    for path, _ in jax.tree_util.tree_flatten_with_path(dict(variables))[0]
  }


def check_plan_covers(plan: Plan, variables: Mapping[str, Any], layout: Layout) -> None:
  """Every variable of ours filled once: a layout that misses one is a bug here."""
  filled = [entry.leaf for entry in plan.keyed.values()] + list(plan.constants)
  if sorted(filled) != sorted(leaves_of(variables)):
    missing = sorted(leaves_of(variables) - set(filled))
    raise AssertionError(f'the {layout.their_model} layout does not fill {missing[:3]}')


def their_kind_of(state: StateDict) -> str:
  for marker, kind in KIND_MARKERS:
    if any(marker in f'.{key}' for key in state):
      return kind
  return 'normal_deploy' if any(key.endswith('.conv.bias') for key in state) else 'normal'


def problems_with(plan: Plan, state: StateDict) -> list[str]:
  """What keeps `state` from filling the plan, most telling first."""
  problems = [f"it has no key '{key}'" for key in sorted(plan.keyed) if key not in state]
  expected = plan.keyed.keys() | plan.ignored | {WIDTHS_KEY}
  problems += [
    f"its key '{key}' is not one of that model's" for key in sorted(state) if key not in expected
  ]
  problems += [
    f"its key '{key}' has shape {tuple(state[key].shape)} where the model has {entry.shape}"
    for key, entry in sorted(plan.keyed.items())
    if key in state and tuple(state[key].shape) != entry.shape
  ]
  return problems


def build_variables(
  plan: Plan, state: StateDict, dtype: type[np.floating] = np.float32
) -> dict[str, Any]:
  values = {
    **{
      entry.leaf: entry.to_ours(np.asarray(state[key], dtype)) for key, entry in plan.keyed.items()
    },
    **plan.constants,
  }
  variables: dict[str, Any] = {'params': {}, 'batch_stats': {}}
  for leaf in sorted(values):
    node = variables
    for key in leaf[:-1]:
      node = node.setdefault(key, {})
    node[leaf[-1]] = np.array(values[leaf], dtype, order='C')  # A copy: theirs may change.
  return variables


def num_classes_of(layout: Layout, state: StateDict) -> int | None:
  head = state.get(f'{layout.denses[-1].name}.bias')
  return None if head is None or np.ndim(head) != 1 else int(np.shape(head)[0])


def convert_state_dict(
  state: StateDict,
  model: str,
  source: str = 'the checkpoint',
  dtype: type[np.floating] = np.float32,
) -> Converted:
  """`state` (keys as the authors' models name them) as our `model`'s variables,
  as `dtype` arrays (float64 only for numerics checks: a run trains float32)."""
  if model not in MODEL_LAYOUTS:
    raise InputError(
      f'the authors publish no {model} that this converter reads; it reads '
      f'{", ".join(MODEL_LAYOUTS)}'
    )
  their_kind = their_kind_of(state)
  attempts = []
  for layout in layouts_of(model):
    if their_kind not in CHECKPOINT_KINDS[layout.layout]:
      attempts.append((layout, [f'{layout.repository} has no {their_kind} {model}']))
      continue
    num_classes = num_classes_of(layout, state)
    if num_classes is None:
      attempts.append(
        (
          layout,
          [f"it has no key '{layout.denses[-1].name}.bias' (the classifier) of one dimension"],
        )
      )
      continue
    conv = OUR_KIND[their_kind]
    plan = make_plan(layout, their_kind, abstract_variables(model, conv, num_classes))
    problems = problems_with(plan, state)
    if not problems:
      variables = build_variables(plan, state, dtype)
      return Converted(
        model, conv, num_classes, variables['params'], variables['batch_stats'], layout, their_kind
      )
    attempts.append((layout, problems))
  layout, problems = min(attempts, key=lambda attempt: len(attempt[1]))
  more = f' ({len(problems) - 1} more problems of that kind or others)' if len(problems) > 1 else ''
  raise InputError(
    f"{source} is not the authors' {layout.their_model} ({layout.repository}) that {model} "
    f'reads as their {their_kind} model: {problems[0]}{more}. Check --model, or that the file '
    "is one of the authors' models (keys as their code names them); nothing was written."
  )


def default_class_names(model: str, num_classes: int) -> tuple[str, ...] | None:
  """CIFAR-10's names for the CIFAR models, ImageNet's (WordNet ids, sorted,
  as torchvision's ImageFolder and tfds number them) for the ImageNet ones."""
  if model not in presets.IMAGENET_MODELS:
    return CIFAR10_CLASSES if num_classes == len(CIFAR10_CLASSES) else None
  spec = importlib.util.find_spec('tensorflow_datasets')  # Its file, without importing it.
  if spec is None or not spec.submodule_search_locations:
    return None
  labels = Path(spec.submodule_search_locations[0]) / 'datasets' / 'imagenet2012' / 'labels.txt'
  names = tuple(labels.read_text().split()) if labels.is_file() else ()
  return names if len(names) == num_classes else None


def read_class_names(path: str) -> tuple[str, ...]:
  try:
    return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
  except OSError as error:
    raise InputError(f'--class_names {path} does not read: {error}') from None


def run_config(converted: Converted) -> ml_collections.ConfigDict:
  """The model's preset in our kind: the ImageNet recipe, or the CIFAR models' later one."""
  recipe = 'imagenet' if converted.model in presets.IMAGENET_MODELS else 'cosine'
  suffix = presets.CIFAR100_SUFFIX if converted.num_classes == 100 and recipe == 'cosine' else ''
  config = presets.preset(converted.model, f'{converted.conv}_{recipe}{suffix}')
  config.num_classes = converted.num_classes
  return config


def write_converted_run(
  workdir: str, converted: Converted, class_names: Sequence[str] | None
) -> ml_collections.ConfigDict:
  """A run's workdir holding `converted` as the train state of step 0; written
  into a staging folder first, so a failure leaves no workdir behind."""
  names = class_names or default_class_names(converted.model, converted.num_classes)
  if names is None or len(names) != converted.num_classes:
    raise InputError(
      f'the model has {converted.num_classes} classes; name them with '
      '--class_names=FILE (one name a line, in label order)'
    )
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    raise InputError(f'--workdir {workdir} exists and is not an empty folder: name a new one')
  config = run_config(converted)
  optimizer = optim.create_optimizer(config, optim.create_lr_schedule(config, steps_per_epoch=1))
  module = models.create_model(converted.model, converted.conv, converted.num_classes)
  state = steps.TrainState.create(
    apply_fn=module.apply,
    params=jax.tree.map(jnp.asarray, converted.params),
    batch_stats=jax.tree.map(jnp.asarray, converted.batch_stats),
    tx=optimizer,
  )
  staging = f'{os.path.abspath(workdir).rstrip(os.sep)}.partial'
  shutil.rmtree(staging, ignore_errors=True)
  manager = checkpointing.checkpoint_manager(staging, config.keep_checkpoints)
  checkpointing.save_checkpoint(manager, state, config)
  manager.wait_until_finished()
  manager.close()
  runs.write_run_config(staging, config, input_shape(converted.model), names)
  if os.path.isdir(workdir):
    os.rmdir(workdir)  # Empty, checked above.
  os.replace(staging, workdir)
  return config


def convert_file(
  checkpoint: str, model: str, workdir: str, class_names_file: str | None = None
) -> tuple[Converted, ml_collections.ConfigDict]:
  """The authors' checkpoint file as a run in `workdir`."""
  names = read_class_names(class_names_file) if class_names_file else None
  converted = convert_state_dict(read_state_dict(checkpoint), model, checkpoint)
  return converted, write_converted_run(workdir, converted, names)
