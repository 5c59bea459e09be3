"""One module per top-level command of ``tinker-actors``; each exposes ``command``.

:class:`~tinker_actors.cli._group.RootGroup` finds the modules here by name (``_`` becomes
``-``) and imports one only when its command is listed or run, so adding a command is adding a
module. Modules import click (and the CLI's own helpers) at module level and nothing heavier:
the SDK, trio, httpx, msgspec and rich are imported inside the command functions.
"""
