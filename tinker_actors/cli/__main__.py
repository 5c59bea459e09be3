"""``python -m tinker_actors.cli``: the same as the ``tinker-actors`` command."""

from __future__ import annotations

from tinker_actors.cli import main

raise SystemExit(main())
