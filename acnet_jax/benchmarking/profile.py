"""Where a compiled step's time goes, per kind of op, from XLA's own trace.

`jax.profiler` records every op the CPU runtime executes (the `hlo_op` of
each event); the compiled program's HLO text says what each op is. An op is
classified by what it computes (a fusion by what it fuses): a convolution's
forward pass, its input gradient (a transposed convolution whose output is a
batch of activations) or its weight gradient (one whose output is a kernel),
pooling and its gradient, matmuls, reductions (BatchNorm statistics, the
loss), and elementwise work and copies. Ops without a kind of their own (the
iotas and zeros a max-pool gradient scatters into) take their user's.

XLA:CPU runs Eigen's larger convolutions asynchronously, on its own threads
(with `--xla_cpu_experimental_ynn_fusion_type=`; by default YNNPACK's run in
their op's event): their time is in no op's event. What the traced ops leave
of the step's wall time is its own row.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from acnet_jax.benchmarking.timing import interleaved_times, summary

KINDS = (
  'conv forward',
  'conv input gradient',
  'conv weight gradient',
  'pooling forward',
  'pooling gradient',
  'matmul',
  'reductions (BN statistics, loss)',
  'elementwise and copies',
  'untraced (wall - traced ops)',
)
UNTRACED = KINDS[-1]
INHERIT = 'inherit'

INSTRUCTION = re.compile(
  r'^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+) = (?P<shape>.+?) '
  r'(?P<opcode>[\w\-]+)\((?P<operands>.*)$'
)
COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%(?P<name>[\w.\-]+) .*\{$')


@dataclasses.dataclass(frozen=True)
class Instruction:
  name: str
  opcode: str
  shape: str
  operands: tuple[str, ...]
  calls: str | None
  op_name: str
  text: str


def parse_hlo(text: str) -> tuple[dict[str, list[Instruction]], str]:
  """(computation name -> its instructions, the entry computation's name)."""
  computations: dict[str, list[Instruction]] = {}
  entry, current = '', None
  for line in text.splitlines():
    header = COMPUTATION.match(line)
    if header:
      current = header.group('name')
      computations[current] = []
      if line.startswith('ENTRY'):
        entry = current
      continue
    match = INSTRUCTION.match(line)
    if match and current is not None:
      rest = match.group('operands')
      calls = re.search(r'calls=%([\w.\-]+)', rest)
      op_name = re.search(r'op_name="([^"]*)"', rest)
      computations[current].append(
        Instruction(
          match.group('name'),
          match.group('opcode'),
          match.group('shape'),
          tuple(re.findall(r'%([\w.\-]+)', rest.split(')')[0])),
          calls.group(1) if calls else None,
          op_name.group(1) if op_name else '',
          line,
        )
      )
  return computations, entry


def leading_dim(shape: str) -> int | None:
  match = re.match(r'\(?\w+\[(\d+)', shape)
  return int(match.group(1)) if match else None


def window_sizes(instruction: Instruction) -> tuple[int, ...]:
  match = re.search(r'window=\{size=([\dx]+)', instruction.text)
  return tuple(int(size) for size in match.group(1).split('x')) if match else ()


def kind_of(
  instruction: Instruction, computations: Mapping[str, list[Instruction]], batch_size: int
) -> str:
  """The kind of an op of the entry computation (or INHERIT)."""
  body = [instruction]
  if instruction.calls in computations:
    body = computations[instruction.calls]
  opcodes = {i.opcode for i in body}
  op_names = ' '.join(i.op_name for i in [instruction, *body])
  backward = 'transpose(' in op_names
  if 'convolution' in opcodes:
    conv = next(i for i in body if i.opcode == 'convolution')
    if leading_dim(conv.shape) != batch_size:
      return 'conv weight gradient'
    return 'conv input gradient' if backward else 'conv forward'
  windows = [window_sizes(i) for i in body if i.opcode == 'reduce-window']
  if any(sizes and sizes[0] > 1 for sizes in windows):
    return 'reductions (BN statistics, loss)'  # XLA's partial sums over the batch.
  if (
    'pool_gradient' in op_names
    or opcodes & {'select-and-scatter', 'scatter'}
    or (
      'reduce-window' in opcodes
      and (
        's32[' in instruction.shape or 'lhs_dilate' in ' '.join(i.text for i in body) or backward
      )
    )
  ):
    return 'pooling gradient'
  if 'reduce-window' in opcodes:
    return 'pooling forward'
  if 'dot' in opcodes:
    return 'matmul'
  if 'reduce' in opcodes:
    return 'reductions (BN statistics, loss)'
  if opcodes <= {'iota', 'broadcast', 'constant', 'parameter', 'bitcast'}:
    return INHERIT
  return 'elementwise and copies'


def classify(hlo_text: str, batch_size: int) -> dict[str, str]:
  """Entry op name -> kind, the INHERIT ones resolved through their users."""
  computations, entry = parse_hlo(hlo_text)
  ops = computations[entry]
  kinds = {op.name: kind_of(op, computations, batch_size) for op in ops}
  users = collections.defaultdict(list)
  for op in ops:
    for operand in op.operands:
      users[operand].append(op.name)

  def resolve(name: str, seen: frozenset[str] = frozenset()) -> str:
    if kinds.get(name, INHERIT) != INHERIT or name in seen:
      return kinds.get(name, 'elementwise and copies')
    for user in users[name]:
      kind = resolve(user, seen | {name})
      if kind != INHERIT:
        return kind
    return 'elementwise and copies'

  return {name: resolve(name) for name in kinds}


def op_times(events: Iterable[Any]) -> dict[str, float]:
  """hlo_op -> seconds, summed over the trace's events."""
  times: dict[str, float] = collections.Counter()
  for event in events:
    stats = dict(event.stats)
    if 'hlo_op' in stats:
      times[stats['hlo_op']] += event.duration_ns / 1e9
  return dict(times)


def trace_events(run: Callable[[], Any], steps: int, warmup: int) -> tuple[list[Any], float]:
  """The profiler's events of `steps` calls of `run` after `warmup` untraced
  ones (each waited for), and the median wall time of a call."""
  interleaved_times({'step': run}, rounds=0, warmup=warmup)
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder)
    try:
      times = interleaved_times({'step': run}, rounds=steps)['step']
    finally:
      jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(folder, '**', '*.xplane.pb'), recursive=True))[-1]
    data = jax.profiler.ProfileData.from_file(path)
    events = [event for plane in data.planes for line in plane.lines for event in line.events]
  return events, summary(times)['median_s']


def profile(
  compiled: jax.stages.Compiled,
  run: Callable[[], Any],
  steps: int,
  batch_size: int,
  warmup: int = 0,
) -> dict[str, float]:
  """Kind -> seconds per step of the compiled program `run` calls."""
  kinds = classify(compiled.as_text(), batch_size)
  per_kind: dict[str, float] = dict.fromkeys(KINDS, 0.0)
  events, step_s = trace_events(run, steps, warmup)
  for op, seconds in op_times(events).items():
    per_kind[kinds.get(op, 'elementwise and copies')] += seconds / steps
  # Traced ops can overlap one another, so this is a lower bound.
  per_kind[UNTRACED] = max(0.0, step_s - sum(per_kind.values()))
  return per_kind


def format_profile(rows: Mapping[str, Mapping[str, float]]) -> str:
  """A table: one column per profiled step (label -> kind -> seconds)."""
  labels = list(rows)
  lines = [f'{"op kind":34}' + ''.join(f'{label:>22}' for label in labels)]
  for kind in KINDS:
    cells = []
    for label in labels:
      total = sum(rows[label].values())
      cells.append(f'{rows[label][kind] * 1e3:10.1f} ms {rows[label][kind] / total:6.1%}')
    lines.append(f'{kind:34}' + ''.join(f'{cell:>22}' for cell in cells))
  lines.append(
    f'{"the step (traced + untraced)":34}'
    + ''.join(f'{sum(rows[label].values()) * 1e3:10.1f} ms {"":6}' for label in labels)
  )
  return '\n'.join(lines)
