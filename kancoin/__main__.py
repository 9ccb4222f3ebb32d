"""``python -m kancoin``: the same command line as ``kancoin``."""

from kancoin.cli import main

main()
