"""``python -m soapd``: the command-line interface."""

from soapd.cli import main

raise SystemExit(main())
