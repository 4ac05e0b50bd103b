"""Errors a user can fix from the message alone: `main` prints them without a traceback."""


class InputError(ValueError):
  """A bad config value, data folder, checkpoint or variable tree."""
