"""``python -m vaeas``: see :mod:`vaeas.cli`."""

from .cli import main

raise SystemExit(main())
