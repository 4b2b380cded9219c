"""``python -m e2escan`` is the same as the ``e2escan`` console script."""

from .cli import main

raise SystemExit(main())
