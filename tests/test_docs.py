"""README.md and docs/*.md: every relative link and anchor resolves, every
`python -m acnet_jax.<command>` line in them is accepted by that command's
flag parser (parsed in-process, nothing run), and the pages cleaned of
history name no commit id."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import inspect
import itertools
import re
import shlex
import urllib.parse
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / 'README.md', *(REPO / 'docs').glob('*.md')])
# The pages held to "no commit id": all of them (history lives in git log).
NO_COMMIT_IDS = [str(page.relative_to(REPO)) for page in PAGES]
# What a config placeholder (--config=... or a path with one in it) is read as:
# the defaults, so --config.KEY overrides are still checked against its keys.
BASE_CONFIG = 'acnet_jax/training/config.py'


# ------------------------------------------------------------------ markdown


@dataclasses.dataclass(frozen=True)
class Page:
  path: Path
  prose: list[tuple[int, str]]  # (line number, line) outside code blocks
  code: list[tuple[int, str]]  # (line number, line) inside fenced or indented blocks

  @property
  def name(self) -> str:
    return str(self.path.relative_to(REPO))


def read_page(path: Path) -> Page:
  prose, code = [], []
  fence = None
  indented = False
  previous_blank = True
  for number, line in enumerate(path.read_text().splitlines(), 1):
    stripped = line.strip()
    if fence is not None:
      if stripped.startswith(fence):
        fence = None
      else:
        code.append((number, line))
      previous_blank = False
      continue
    if stripped.startswith(('```', '~~~')):
      fence = stripped[:3]
      indented = False
      continue
    starts_code = line.startswith(('    ', '\t')) and stripped
    if starts_code and (indented or previous_blank):
      indented = True
      code.append((number, line))
    elif not stripped and indented:
      code.append((number, line))
    else:
      indented = False
      prose.append((number, line))
    previous_blank = not stripped
  return Page(path, prose, code)


def without_inline_code(text: str) -> str:
  return re.sub(r'(`+)(.+?)\1', '', text, flags=re.DOTALL)


def prose_text(page: Page) -> str:
  return '\n'.join(line for _, line in page.prose)


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: its text lowercased, punctuation but
  hyphens and underscores dropped (letters of any script stay), spaces to hyphens."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link's text
  text = re.sub(r'[^\w\- ]', '', text.strip().lower())
  return text.replace(' ', '-')


def anchors(page: Page) -> set[str]:
  found, seen = set(), {}
  for _, line in page.prose:
    match = re.match(r' {0,3}#{1,6}\s+(.*?)\s*#*\s*$', line)
    if match:
      base = slug(match.group(1))
      count = seen.get(base, 0)
      seen[base] = count + 1
      found.add(base if count == 0 else f'{base}-{count}')
  return found


LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def relative_links(page: Page) -> list[str]:
  text = without_inline_code(prose_text(page))
  links = LINK.findall(text) + re.findall(r'^\s*\[[^\]]+\]:\s*(\S+)', text, flags=re.MULTILINE)
  return [link for link in links if not re.match(r'[a-z][a-z0-9+.-]*:', link)]


def test_pages_are_found():
  names = {page.name for page in map(read_page, PAGES)}
  assert {'README.md', 'docs/performance.md', 'docs/authors.md'} <= names
  assert all((REPO / name).is_file() for name in NO_COMMIT_IDS)


def test_github_slugs():
  assert slug("The project's XLA flag") == 'the-projects-xla-flag'
  assert slug('Beside PyTorch eager') == 'beside-pytorch-eager'
  assert slug('The online form: a block trained at the cost of one conv') == (
    'the-online-form-a-block-trained-at-the-cost-of-one-conv'
  )
  assert slug('`config.online` and [layers](layers.md)') == 'configonline-and-layers'
  assert slug('Größe — à la carte') == 'größe--à-la-carte'
  assert slug('snake_case names') == 'snake_case-names'


@pytest.mark.parametrize('path', PAGES, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(path):
  page = read_page(path)
  broken = []
  for link in relative_links(page):
    target, _, anchor = (urllib.parse.unquote(part) for part in link.partition('#'))
    file = (path.parent / target).resolve() if target else path
    if not file.exists():
      shown = file.relative_to(REPO) if file.is_relative_to(REPO) else file
      broken.append(f'{link}: no file {shown}')
    elif anchor and file.suffix == '.md' and anchor not in anchors(read_page(file)):
      broken.append(f'{link}: no heading of {file.name} has the anchor #{anchor}')
  assert not broken, f'{page.name}: ' + '; '.join(broken)


# ------------------------------------------------------------- command lines


def command_lines(page: Page) -> list[tuple[int, str]]:
  """(line number, text from `python -m acnet_jax.` on) of each command in a
  code block (backslash continuations joined) or an inline code span."""
  found = []
  logical, start = '', 0
  for number, line in page.code:
    if not logical:
      start = number
    logical += line.rstrip()
    if logical.endswith('\\'):
      logical = logical[:-1] + ' '
      continue
    found.append((start, logical))
    logical = ''
  if logical:
    found.append((start, logical))
  found.extend(bare_commands(page))
  # Inline code spans, which may run across lines of a paragraph.
  joined = prose_text(page)
  for match in re.finditer(r'(`+)(.+?)\1', joined, flags=re.DOTALL):
    line_index = joined.count('\n', 0, match.start())
    found.append((page.prose[line_index][0], match.group(2).replace('\n', ' ')))
  return [
    (number, text[text.index('python -m acnet_jax.') :])
    for number, text in found
    if 'python -m acnet_jax.' in text
  ]


def bare_commands(page: Page) -> list[tuple[int, str]]:
  """Commands written as prose lines, outside any code block (continuations joined)."""
  found, lines = [], iter(page.prose)
  for number, line in lines:
    if line.startswith('python -m acnet_jax.'):
      text = line.rstrip()
      while text.endswith('\\'):
        text = text[:-1] + ' ' + next(lines, (0, ''))[1].rstrip()
      found.append((number, text))
  return found


def test_commands_are_in_code_blocks():
  """A command as a paragraph renders as prose ([--flag=...] as a link)."""
  bare = [
    f'{page.name}:{number}' for page in map(read_page, PAGES) for number, _ in bare_commands(page)
  ]
  assert not bare, f'command lines outside a code block: {bare}'


SHELL_OPERATORS = {';', '&&', '||', '|', '&', '>', '>>', '2>', '2>&1', 'done', 'done;'}


def is_placeholder(value: str) -> bool:
  """DIR, FILE, N, runs/NAME, configs/cfqkbnc_CONV.py, $seed, ${conv}, <conv>, ...:
  a value the reader fills in."""
  return (
    '$' in value
    or '<' in value
    or '...' in value
    or any(re.fullmatch(r'[A-Z][A-Z0-9]*', part) for part in re.split(r'[^A-Za-z0-9]+', value))
  )


def variants(text: str) -> list[str]:
  """One line per alternative of each <a|b> in it."""
  choices = re.findall(r'<([^<>]*\|[^<>]*)>', text)
  if not choices:
    return [text]
  lines = []
  for picked in itertools.product(*(choice.split('|') for choice in choices)):
    line = text
    for choice, alternative in zip(choices, picked):
      line = line.replace(f'<{choice}>', alternative, 1)
    lines.append(line)
  return lines


def arguments(command: str) -> tuple[str, list[str]]:
  """(module, its arguments): optional [--flag=...] unwrapped, bare placeholders
  ([ABLATION]) dropped, shell comments and what follows an operator left out."""
  words = shlex.split(command, comments=True)
  module = words[2]
  args = []
  for word in words[3:]:
    if word in SHELL_OPERATORS or word.endswith(';'):
      break
    word = word.strip('[]') if word.startswith('[') else word
    if word.endswith(']') and word.count('[') < word.count(']'):
      word = word[:-1]
    if not word.startswith('-') and is_placeholder(word):
      continue
    args.append(word)
  return module, args


class Parsed(Exception):
  """Raised where a command would start its work: its flags were accepted."""


def absl_flag_values(module, args: list[str]) -> flags.FlagValues:
  """A fresh FlagValues holding exactly the command's flags, no validators
  (required flags are the command's business at run time, not the docs')."""
  fresh = flags.FlagValues()
  if hasattr(module, 'define_flags'):
    # The command defines its flags when run; point every definition at `fresh`.
    originals = {}
    for name in dir(flags):
      function = getattr(flags, name)
      if callable(function) and not inspect.isclass(function):
        try:
          if 'flag_values' in inspect.signature(function).parameters:
            originals[name] = function
        except (TypeError, ValueError):
          pass
    try:
      for name, function in originals.items():
        setattr(flags, name, _into(function, fresh))
      module.define_flags()
    finally:
      for name, function in originals.items():
        setattr(flags, name, function)
  else:
    # Defined at import, on absl's global FLAGS: copies of them.
    defined = flags.FLAGS.flags_by_module_dict().get(module.__name__, [])
    assert defined, f'{module.__name__} defines no absl flags'
    for flag in defined:
      if isinstance(flag, config_flags.config_flags._ConfigFlag):  # noqa: SLF001
        # Its overrides are read from the argv it is given and defined in `fresh`.
        config_flags.DEFINE_config_file(
          flag.name,
          None,
          flag.help,
          flag_values=fresh,
          lock_config=True,
          sys_argv=['command', *args],
        )
      else:
        fresh[flag.name] = copy.deepcopy(flag)
  for name in list(fresh):
    fresh[name].validators = []
  return fresh


def _into(function, fresh: flags.FlagValues):
  def defined_in_fresh(*positional, **keywords):
    keywords.setdefault('flag_values', fresh)
    return function(*positional, **keywords)

  return defined_in_fresh


def config_key_exists(config, key: str) -> bool:
  node = config
  for part in key.split('.'):
    try:
      node = node[part]
    except (KeyError, TypeError, AttributeError):
      return False
  return True


def check_absl(module, args: list[str]) -> None:
  names_only, parsed_args = [], []
  for arg in args:
    name, equals, value = arg.partition('=')
    if name.lstrip('-') == 'config' and equals:
      path = value.split(':')[0]
      if not is_placeholder(path):
        assert (REPO / path).is_file(), f'--config={value}: no file {path}'
      if is_placeholder(value):
        value = BASE_CONFIG
      parsed_args.append(f'--config={value}')
    elif equals and is_placeholder(value):
      names_only.append(name.lstrip('-'))
    else:
      parsed_args.append(arg)
  fresh = absl_flag_values(module, parsed_args)
  try:
    rest = fresh(['command', *parsed_args])
  except Exception as error:  # absl's flags.Error; config_flags' KeyError for an unknown key
    raise AssertionError(f'{type(error).__name__}: {str(error).strip().splitlines()[-1]}') from None
  assert rest == ['command'], f'arguments the command does not take: {rest[1:]}'
  for name in names_only:
    if name.startswith('config.') and 'config' in fresh:
      assert config_key_exists(fresh['config'].value, name[len('config.') :]), (
        f'--{name}: no such config key'
      )
    else:
      assert name in fresh or (name.startswith('no') and name[2:] in fresh), (
        f'--{name}: no such flag'
      )


def check_argparse(module, args: list[str], monkeypatch) -> None:
  """A command with argparse in main(argv): run main until it has parsed."""

  def parsed(self, *positional, **keywords):
    namespace = original(self, *positional, **keywords)
    raise Parsed(namespace)

  original = argparse.ArgumentParser.parse_args
  with monkeypatch.context() as patch:
    patch.setattr(argparse.ArgumentParser, 'parse_args', parsed)
    with pytest.raises(Parsed):
      try:
        module.main(args)
      except SystemExit as error:
        raise AssertionError(f'argparse refused {args}: exit {error.code}') from None


def all_commands() -> list[tuple[str, int, str]]:
  return [
    (page.name, number, line)
    for page in map(read_page, PAGES)
    for number, text in command_lines(page)
    for line in variants(text)
  ]


def test_commands_are_found():
  commands = all_commands()
  modules = {arguments(line)[0] for _, _, line in commands}
  assert {'acnet_jax.main', 'acnet_jax.export', 'acnet_jax.convert'} <= modules
  # A continued line is read whole, an optional flag unwrapped, a comment left out.
  page = Page(
    Path('x.md'),
    [],
    [
      (1, '    python -m acnet_jax.main --config=configs/rc56.py \\'),
      (2, '      --workdir=DIR [--mode=eval]   # a comment'),
    ],
  )
  ((number, line),) = command_lines(page)
  assert number == 1
  assert arguments(line) == (
    'acnet_jax.main',
    ['--config=configs/rc56.py', '--workdir=DIR', '--mode=eval'],
  )
  assert variants('--config=configs/cfqkbnc_<normal|acnet>.py') == [
    '--config=configs/cfqkbnc_normal.py',
    '--config=configs/cfqkbnc_acnet.py',
  ]


@pytest.mark.parametrize(
  'line',
  [
    'python -m acnet_jax.export --workdir=DIR --no_such_flag=1',
    'python -m acnet_jax.convert --checkpoint=FILE --model=no_such_model --workdir=DIR',
    'python -m acnet_jax.main --config=configs/rc56_acnet.py --config.no_such_key=1',
    'python -m acnet_jax.main --config=configs/rc56_acnet.py --config.no_such_key=DIR',
    'python -m acnet_jax.benchmark --steps=many',
    'python -m acnet_jax.benchmark --pipeline --data_dir=DIR --decode_batches=many',
    'python -m acnet_jax.main --config=configs/no_such_preset.py --workdir=DIR',
  ],
)
def test_a_bad_command_line_is_caught(line, monkeypatch):
  with pytest.raises(AssertionError):
    check_command(line, monkeypatch)


def check_command(line: str, monkeypatch) -> None:
  module_name, args = arguments(line)
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError:
    raise AssertionError(f'no command {module_name}') from None
  monkeypatch.chdir(REPO)  # Config files are named from the repository root.
  if any(hasattr(module, name) for name in ('define_flags', 'FLAGS')):
    check_absl(module, args)
  else:
    check_argparse(module, args, monkeypatch)


@pytest.mark.parametrize(
  'page, number, line',
  all_commands(),
  ids=[f'{page}:{number}' for page, number, _ in all_commands()],
)
def test_command_lines_are_accepted(page, number, line, monkeypatch):
  try:
    check_command(line, monkeypatch)
  except AssertionError as error:
    raise AssertionError(f'{page}:{number}: {line}\n{error}') from None


# ---------------------------------------------------------------- commit ids

COMMIT_ID = re.compile(r'\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b')


def test_commit_id_pattern():
  assert COMMIT_ID.findall('at 0b34818, then 7cbe969a; 1234567 and deadbeef are no ids') == [
    '0b34818',
    '7cbe969a',
  ]


@pytest.mark.parametrize('name', NO_COMMIT_IDS)
def test_no_commit_ids(name):
  text = (REPO / name).read_text()
  found = sorted(set(COMMIT_ID.findall(text)))
  assert not found, f'{name} names commits {found}: history lives in git log'


# Words of a lab notebook, not of a reference: when and where something was
# measured belongs in git log.
HISTORY = re.compile(r'\bsittings?\b|\bsessions?\b|\bfrozen clone\b|/work/', re.IGNORECASE)


@pytest.mark.parametrize('name', NO_COMMIT_IDS)
def test_no_lab_notebook_history(name):
  found = sorted({match.group(0) for match in HISTORY.finditer((REPO / name).read_text())})
  assert not found, f'{name} speaks of {found}: say what is true now'


# The front door and the performance reference stay short enough to read
# whole: more belongs on a page of its own.
MOST_LINES = {'README.md': 200, 'docs/performance.md': 250}


@pytest.mark.parametrize('name', MOST_LINES)
def test_page_is_short_enough_to_read_whole(name):
  lines = len((REPO / name).read_text().splitlines())
  assert lines <= MOST_LINES[name], f'{name} has {lines} lines, more than {MOST_LINES[name]}'
