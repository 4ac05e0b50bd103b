"""The layout: every module's acnet_jax imports form a DAG that goes down the
layers (commands -> analysis, benchmarking, interop, campaigns -> training -> deploy ->
data -> models -> fusion -> blocks), and each subpackage says what lives in it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import acnet_jax

PACKAGE = Path(acnet_jax.__file__).parent
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
  'pipeline_benchmark': 9,
  'convert': 9,
  'campaign': 9,
  '__init__': 9,
}


def module_names() -> list[str]:
  return sorted(name for _, name, _ in pkgutil.walk_packages([str(PACKAGE)], 'acnet_jax.'))


def path_of(module: str) -> Path:
  parts = module.split('.')[1:]
  candidate = PACKAGE.joinpath(*parts)
  return candidate / '__init__.py' if candidate.is_dir() else candidate.with_suffix('.py')


def imported(module: str) -> set[str]:
  """The acnet_jax modules `module` imports (at any depth in the file)."""
  found = set()
  names = set(module_names()) | {'acnet_jax'}
  for node in ast.walk(ast.parse(path_of(module).read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith('acnet_jax')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('acnet_jax'):
      for alias in node.names:
        submodule = f'{node.module}.{alias.name}'
        found.add(submodule if submodule in names else node.module)
  return found - {module}


def layer(module: str) -> int:
  parts = module.split('.')
  return LAYERS['__init__'] if len(parts) == 1 else LAYERS[parts[1]]


def test_imports_form_a_dag_without_a_cycle():
  graph = {module: imported(module) for module in module_names()}
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


def test_imports_go_down_the_layers():
  for module in module_names():
    for other in imported(module):
      if other == 'acnet_jax':
        continue
      assert layer(other) <= layer(module), (
        f'{module} (layer {layer(module)}) imports {other} (layer {layer(other)})'
      )


def test_every_subpackage_says_what_lives_in_it():
  for info in pkgutil.iter_modules([str(PACKAGE)]):
    if info.ispkg:
      package = importlib.import_module(f'acnet_jax.{info.name}')
      doc = package.__doc__ or ''
      assert len(doc.split()) > 10, f'acnet_jax.{info.name} has no docstring'
      for module in pkgutil.iter_modules(package.__path__):
        assert module.name in doc, f'acnet_jax.{info.name} does not mention {module.name}'
