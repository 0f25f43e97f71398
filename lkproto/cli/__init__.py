"""Implementations of the ``lkproto`` command line (the registry is :mod:`lkproto.__main__`).

One module per command group: :mod:`~lkproto.cli.server` (``server``, ``install-server``),
:mod:`~lkproto.cli.token`, :mod:`~lkproto.cli.room` (``join``, ``send``, ``recv``, ``rpc``),
:mod:`~lkproto.cli.tap`, :mod:`~lkproto.cli.decode`, :mod:`~lkproto.cli.conformance` and
:mod:`~lkproto.cli.bench`. Each command is a pair ``add_<name>_arguments(parser)`` /
``run_<name>(args) -> int`` plus ``<NAME>_EPILOG``; modules import only the standard library at
the top, so building the parser stays cheap, and load lkproto's heavier parts inside ``run_*``.
"""

from __future__ import annotations

__all__: list[str] = []
