"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class KancoinError(Exception):
    """A problem with the user's input or request (bad file, impossible rate, ...)."""
