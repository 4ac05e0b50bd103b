"""The layout: the imports among the modules of acnet_jax, benchmarks/ and
authors_torch/ form a DAG; acnet_jax's go down the layers (commands ->
analysis, benchmarking, interop, campaigns -> training -> deploy -> data ->
models -> fusion -> blocks -> xla_cpu) and never reach benchmarks/ or
authors_torch/; the CPU workarounds are reached only through their dispatch
(and the flag through the package); and each subpackage says what lives in it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import acnet_jax

PACKAGE = Path(acnet_jax.__file__).parent
ROOT = PACKAGE.parent
# The top-level packages whose imports are checked: the library, the benchmarks
# and the authors' PyTorch mirror that both of them and the tests use.
CHECKED = ('acnet_jax', 'benchmarks', 'authors_torch')
# Lower layers never import higher ones; a layer may import itself.
LAYERS = {
  'errors': 0,
  'xla_cpu': 0,
  'blocks': 1,
  'fusion': 2,
  'models': 3,
  'data': 4,
  'deploy': 5,
  'training': 6,
  'analysis': 7,
  'benchmarking': 7,
  'interop': 7,
  'campaigns': 7,
  'cli': 8,
  'main': 9,
  'export': 9,
  'analyze': 9,
  'benchmark': 9,
  'convert': 9,
  'qat': 9,
  'campaign': 9,
  '__init__': 9,
}


def module_names(top: str = 'acnet_jax') -> list[str]:
  return sorted(name for _, name, _ in pkgutil.walk_packages([str(ROOT / top)], f'{top}.'))


def path_of(module: str) -> Path:
  candidate = ROOT.joinpath(*module.split('.'))
  return candidate / '__init__.py' if candidate.is_dir() else candidate.with_suffix('.py')


def checked_modules() -> list[str]:
  """Every module of CHECKED, a top-level folder's own __init__ where it has one."""
  tops = [top for top in CHECKED if path_of(top).is_file()]
  return tops + [name for top in CHECKED for name in module_names(top)]


def is_checked(name: str) -> bool:
  return name.split('.')[0] in CHECKED


def imported(module: str) -> set[str]:
  """The checked modules `module` imports (at any depth in the file, so an
  import inside a function counts too)."""
  found = set()
  names = set(checked_modules())
  for node in ast.walk(ast.parse(path_of(module).read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if is_checked(alias.name)}
    elif isinstance(node, ast.ImportFrom) and node.module and is_checked(node.module):
      for alias in node.names:
        submodule = f'{node.module}.{alias.name}'
        found.add(submodule if submodule in names else node.module)
  return found - {module}


def layer(module: str) -> int:
  parts = module.split('.')
  return LAYERS['__init__'] if len(parts) == 1 else LAYERS[parts[1]]


def test_the_checked_modules_are_found():
  modules = checked_modules()
  assert {'benchmarks.pytorch_peer', 'authors_torch.blocks', 'acnet_jax.fusion'} <= set(modules)
  assert all(path_of(module).is_file() for module in modules)


def test_imports_form_a_dag_without_a_cycle():
  graph = {module: imported(module) for module in checked_modules()}
  state: dict[str, str] = {}

  def visit(module: str, stack: list[str]) -> None:
    if state.get(module) == 'done':
      return
    assert state.get(module) != 'open', f'import cycle: {" -> ".join([*stack, module])}'
    state[module] = 'open'
    for other in sorted(graph.get(module, ())):
      visit(other, [*stack, module])
    state[module] = 'done'

  for module in graph:
    visit(module, [])


def test_acnet_jax_imports_neither_the_benchmarks_nor_the_authors_mirror():
  for module in ['acnet_jax', *module_names()]:
    outside = {other for other in imported(module) if not other.startswith('acnet_jax')}
    assert not outside, f'{module} imports {sorted(outside)}'


def test_imports_go_down_the_layers():
  for module in module_names():
    for other in imported(module):
      if other == 'acnet_jax':
        continue
      assert layer(other) <= layer(module), (
        f'{module} (layer {layer(module)}) imports {other} (layer {layer(other)})'
      )


def test_the_cpu_workarounds_are_reached_only_through_their_dispatch():
  """blocks/ and models/ stay plain flax: a CPU form is picked in one place."""
  public = {'acnet_jax.xla_cpu', 'acnet_jax.xla_cpu.dispatch'}
  for module in module_names():
    if module.split('.')[1:2] == ['xla_cpu']:
      continue
    reached = {other for other in imported(module) if other.split('.')[1:2] == ['xla_cpu']}
    assert reached <= public, f'{module} imports {sorted(reached - public)}'


def test_every_subpackage_says_what_lives_in_it():
  for info in pkgutil.iter_modules([str(PACKAGE)]):
    if info.ispkg:
      package = importlib.import_module(f'acnet_jax.{info.name}')
      doc = package.__doc__ or ''
      assert len(doc.split()) > 10, f'acnet_jax.{info.name} has no docstring'
      for module in pkgutil.iter_modules(package.__path__):
        assert module.name in doc, f'acnet_jax.{info.name} does not mention {module.name}'
