"""A model's initialisation compiled at optimisation level 0 on the CPU.

The init is one jitted program that draws every parameter from a threefry key
(portable seeds: docs/training.md). XLA:CPU's LLVM backend spends seconds
optimising each draw's threefry rounds and its normal's inverse error function,
for a program that runs once. At `xla_backend_optimization_level=0` the same
program compiles 3-5x faster and gives the same weights, bit for bit here
(tests/xla_cpu/test_init_compile.py); see docs/training.md, Seeds.
"""

from __future__ import annotations

from typing import Any

INIT_COMPILER_OPTIONS: dict[str, Any] = {'xla_backend_optimization_level': 0}
