"""Runs the click app of ``clickapp.commands`` as its console script would: ``cli()`` parses
``sys.argv`` and leaves with ``sys.exit``."""

import sys

from clickapp.commands import cli

if __name__ == "__main__":
    sys.argv[0] = "clickapp"
    cli()
