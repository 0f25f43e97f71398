"""Command line: ``python -m lkproto <command>`` (also installed as ``lkproto``).

This module is only the registry: :data:`COMMANDS` names, for each command, its one-line help
and the :mod:`lkproto.cli` module that implements it (``add_<name>_arguments(parser)``,
``run_<name>(args) -> int`` and ``<NAME>_EPILOG``). Only the module of the command being run is
imported, so ``import lkproto.__main__`` and ``lkproto --help`` stay cheap.

Errors are one line on stderr (``lkproto <command>: <message>``) and a non-zero status: 1 for
failures (LkError, OSError), 2 for bad usage, 130 for Ctrl-C. ``LKPROTO_DEBUG=1`` re-raises
unexpected exceptions with their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class Command(NamedTuple):
    """A registered sub-command."""

    help: str
    module: str
    """Module in :mod:`lkproto.cli` holding ``add_<name>_arguments`` and ``run_<name>``."""


COMMANDS: Final[dict[str, Command]] = {
    "server": Command("run a loopback livekit-server with the demo key", "server"),
    "install-server": Command("build the pinned livekit-server", "server"),
    "token": Command("mint an access token with room grants", "token"),
    "join": Command("join a room and print its events live", "room"),
    "send": Command("send a data packet, a text stream or a file", "room"),
    "recv": Command("print data packets and text streams, save files", "room"),
    "rpc": Command("call an RPC method on another participant", "room"),
    "tap": Command("pretty-print and filter a JSON Lines wire tap", "tap"),
    "decode": Command("decode a signal message or data packet (hex/base64) to JSON", "decode"),
    "conformance": Command("run the protocol conformance suite", "conformance"),
    "bench": Command("list or run the benchmark scripts", "bench"),
}
"""Sub-commands in help order: name -> :class:`Command`."""

_EPILOG: Final = """\
examples:
  lkproto server                                   # terminal 1: a local server
  lkproto join --identity watcher --tap run.jsonl  # terminal 2: watch the room
  lkproto send --payload hello --topic chat        # terminal 3: say something
  lkproto tap run.jsonl --type 'DataPacket.*'

`lkproto COMMAND --help` shows each command's options and examples.
"""


def _attr(name: str) -> str:
    return name.replace("-", "_")


def _load(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], object, str]:
    module = importlib.import_module(f"lkproto.cli.{COMMANDS[name].module}")
    add = getattr(module, f"add_{_attr(name)}_arguments")
    run = getattr(module, f"run_{_attr(name)}")
    epilog = getattr(module, f"{_attr(name).upper()}_EPILOG", None)
    return add, run, epilog or ""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser, one sub-parser per entry of :data:`COMMANDS`.

    Args:
        only: build the options of this command only (the others are listed by name and help);
            None builds them all.
    """
    parser = argparse.ArgumentParser(
        prog="lkproto",
        description="lkproto: a LiveKit client in pure Python, from the command line.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=command.help, description=command.help)
            continue
        add, run, epilog = _load(name)
        child = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=name != "conformance",  # its --help belongs to the runner
        )
        add(child)
        child.set_defaults(run=run)
    return parser


def _selected(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def _fail(command: str, message: str, status: int) -> int:
    print(f"lkproto {command}: {message}", file=sys.stderr)
    return status


# Top-level modules of the `rtc` extra's distributions (aiortc pulls aioice, pylibsrtp, pyee,
# pyOpenSSL; websockets, av and cryptography are listed directly).
_RTC_EXTRA_MODULES = frozenset(
    {"aiortc", "aioice", "av", "websockets", "cryptography", "pylibsrtp", "pyee", "OpenSSL"}
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments without the program name; ``None`` means ``sys.argv[1:]``.

    Returns:
        The exit status (errors are printed as one line, not raised).
    """
    from lkproto.cli._common import CliError
    from lkproto.errors import LkError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected(argv))
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    run: Callable[[argparse.Namespace], int] = args.run
    command: str = args.command
    try:
        return run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CliError as exc:
        return _fail(command, str(exc), exc.status)
    except LkError as exc:
        return _fail(command, str(exc) or type(exc).__name__, EXIT_FAILURE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] in _RTC_EXTRA_MODULES:
            # The protobuf-only install has wire/core/api and decode/tap; everything that opens
            # a room needs the rtc extra (pyproject.toml [project.optional-dependencies]).
            message = (
                f"this command needs the 'rtc' extra (missing module {exc.name!r}): "
                "pip install 'lkproto[rtc]'"
            )
            return _fail(command, message, EXIT_FAILURE)
        if os.environ.get("LKPROTO_DEBUG"):
            raise
        return _fail(command, f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILURE)
    except OSError as exc:
        text = exc.strerror or str(exc) or type(exc).__name__
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(command, f"{text}{where}", EXIT_FAILURE)
    except Exception as exc:
        if os.environ.get("LKPROTO_DEBUG"):
            raise
        return _fail(command, f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
