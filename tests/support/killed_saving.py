"""python -m tests.support.killed_saving STEP MOMENT MAIN_FLAGS...:
`acnet_jax.main MAIN_FLAGS`, killed by SIGKILL at MOMENT of the save of the
checkpoint of step STEP: `writing` (its train state's files written, the
item not yet renamed into the step's temporary folder) or `committing` (every
item written, the step's folder not yet renamed to its final name). How a
test crashes a run at an exact point of a save rather than at whatever moment
a timer lands on."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from absl import app
from orbax.checkpoint._src.path import atomicity

from acnet_jax import main

MOMENTS = ('writing', 'committing')


def is_the_moment(final: Path, step: int, moment: str) -> bool:
  """Whether renaming a temporary folder to `final` is `moment` of step's save."""
  if moment == 'committing':
    return final.name == str(step)
  return final.name == 'state' and final.parent.name.startswith(f'{step}.')


def kill_at(step: int, moment: str) -> None:
  finalize = atomicity.AtomicRenameTemporaryPath.finalize

  async def killing(self):
    if is_the_moment(Path(self._final_path), step, moment):  # pylint: disable=protected-access
      os.kill(os.getpid(), signal.SIGKILL)
    return await finalize(self)

  atomicity.AtomicRenameTemporaryPath.finalize = killing


if __name__ == '__main__':
  step, moment, *flags = sys.argv[1:]
  kill_at(int(step), moment)
  sys.argv = [sys.argv[0], *flags]  # config_flags reads its overrides from sys.argv.
  app.run(main.main, flags_parser=main.parse_flags)
