"""Errors a user can act on from the message alone: the commands print them
as one paragraph, without a traceback (`REPORTED_ERRORS`, `cli.fail`)."""


class InputError(ValueError):
  """A bad config value, data folder, checkpoint or variable tree."""


class TrainingError(Exception):
  """A run that failed though its input was valid (its loss diverged); the
  message says what is kept and what to try."""


# What the commands report as one paragraph and exit 1 on.
REPORTED_ERRORS = (InputError, TrainingError)
