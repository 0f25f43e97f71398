"""``lkproto conformance``: hands over to :mod:`lkproto.conformance.cli` when it is installed.

Its options are parsed by that module's own parser (``add_arguments(parser)`` then
``run(args) -> int``), so they are only loaded when this command runs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Final

from lkproto.cli._common import CliError

__all__ = ["CONFORMANCE_EPILOG", "add_conformance_arguments", "run_conformance"]

CONFORMANCE_MODULE: Final = "lkproto.conformance.cli"

CONFORMANCE_EPILOG: Final = """\
examples:
  lkproto conformance --help        # the runner's own options
  lkproto conformance [OPTIONS...]  # everything after the command goes to the runner
"""


def add_conformance_arguments(parser: argparse.ArgumentParser) -> None:
    # Everything after `conformance` is left unparsed here (see lkproto.__main__.main).
    parser.set_defaults(passthrough=True)


def run_conformance(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(CONFORMANCE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and CONFORMANCE_MODULE.startswith(exc.name):
            raise CliError(
                f"the conformance runner is not available ({CONFORMANCE_MODULE} not found)", 2
            ) from exc
        raise
    parser = argparse.ArgumentParser(
        prog="lkproto conformance",
        description="run the protocol conformance suite against a LiveKit server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    inner = parser.parse_args(args.extra)
    status: int = module.run(inner)
    return status
