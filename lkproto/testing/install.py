"""Build and cache a pinned livekit-server binary from the Go module proxy.

Releases of livekit-server are plain Go programs with no cgo (PROTOCOL-MAP §17 "Install"), so
``go install github.com/livekit/livekit-server/cmd/server@<tag>`` produces the same static binary
that the project publishes; it is named ``server`` and renamed here to
``<cache>/bin/livekit-server-<tag>``. Nothing prebuilt is ever downloaded.

The cache directory is, in order: the ``cache_dir`` argument, ``$LKPROTO_CACHE_DIR``,
``~/.cache/lkproto``. ``$LKPROTO_LIVEKIT_SERVER`` short-circuits everything and names a binary to
use as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lkproto.errors import ServerError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "BUILD_NICENESS",
    "CACHE_DIR_ENV",
    "DEFAULT_LIVEKIT_SERVER_VERSION",
    "LIVEKIT_SERVER_MODULE",
    "SERVER_BINARY_ENV",
    "binary_path",
    "default_cache_dir",
    "ensure_livekit_server",
    "server_version",
]

DEFAULT_LIVEKIT_SERVER_VERSION: Final = "v1.13.5"
"""The server release the interop suite is pinned to (PROTOCOL-MAP §17)."""

LIVEKIT_SERVER_MODULE: Final = "github.com/livekit/livekit-server/cmd/server"
"""Go package path of the server's ``main`` (``cmd/server``)."""

CACHE_DIR_ENV: Final = "LKPROTO_CACHE_DIR"
"""Environment variable overriding the default cache directory."""

SERVER_BINARY_ENV: Final = "LKPROTO_LIVEKIT_SERVER"
"""Environment variable naming a livekit-server binary to use instead of building one."""

GO_INSTALL_TIMEOUT_S: Final = 1800.0
"""Upper bound for one ``go install``: a cold build takes minutes on two cores."""

VERSION_TIMEOUT_S: Final = 30.0

BUILD_NICENESS: Final = 15
"""``nice`` increment of a build: compiling the server takes both cores for minutes, and test
runs (or other builds) on the same machine should keep their share."""

_TAG_RE: Final = re.compile(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")
# urfave/cli prints "<Command.Name> version <Version>" for --version (PROTOCOL-MAP §17 "Install").
_VERSION_RE: Final = re.compile(r"livekit-server version (\S+)")
# What `go` says when the module proxy has no such tag; reported as a clear "cannot serve" error.
_UNKNOWN_VERSION_HINTS: Final = (
    "invalid version",
    "unknown revision",
    "no matching versions",
    "not found",
    "not available",
    "403 forbidden",
    "410 gone",
)
_LOG_TAIL_LINES: Final = 40


def default_cache_dir() -> Path:
    """Return the cache directory used when none is passed.

    Returns:
        ``$LKPROTO_CACHE_DIR`` if set and non-empty, else ``~/.cache/lkproto``.
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lkproto"


def binary_path(
    version: str = DEFAULT_LIVEKIT_SERVER_VERSION, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Return where the binary for ``version`` lives in the cache (it may not exist yet).

    Args:
        version: a release tag such as ``"v1.13.5"``.
        cache_dir: cache directory; ``None`` means :func:`default_cache_dir`.

    Returns:
        ``<cache>/bin/livekit-server-<version>``.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "bin" / f"livekit-server-{version}"


def server_version(binary: str | os.PathLike[str]) -> str | None:
    """Ask a livekit-server binary for its version.

    Args:
        binary: path of the executable.

    Returns:
        The version it prints without a leading ``v`` (e.g. ``"1.13.5"``), or ``None`` when the
        file is missing, cannot run, or does not answer like livekit-server.
    """
    try:
        proc = subprocess.run(
            [os.fspath(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(proc.stdout + proc.stderr)
    return match.group(1) if match else None


def ensure_livekit_server(
    version: str = DEFAULT_LIVEKIT_SERVER_VERSION,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Return a runnable livekit-server of ``version``, building it once if needed.

    Idempotent and safe to call from concurrent processes: builds are serialised by a lock file
    next to the binary, and the binary is moved into place atomically, so a reader never sees a
    half-written file.

    Args:
        version: the release tag to build; only exact tags (``vX.Y.Z``) are accepted so that a
            missing version fails instead of silently resolving to another one.
        cache_dir: cache directory; ``None`` means :func:`default_cache_dir`.

    Returns:
        Path of the executable. With ``$LKPROTO_LIVEKIT_SERVER`` set, that path, after checking it
        runs and reports itself as livekit-server (its version is not compared).

    Raises:
        ServerError: the override is not a livekit-server, ``go`` is missing, the module proxy
            cannot serve ``version``, or the build fails. The message carries the build log tail.
    """
    override = os.environ.get(SERVER_BINARY_ENV)
    if override:
        found = server_version(override)
        if found is None:
            raise ServerError(
                f"${SERVER_BINARY_ENV}={override!r} is not a runnable livekit-server "
                "(`--version` did not answer 'livekit-server version ...')"
            )
        return Path(override)

    if not _TAG_RE.fullmatch(version):
        raise ServerError(
            f"livekit-server version must be an exact release tag like 'v1.13.5', got {version!r}"
        )
    target = binary_path(version, cache_dir)
    if server_version(target) == version.removeprefix("v"):
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.with_name(f".{target.name}.lock")):
        # Another process may have finished the build while this one waited for the lock.
        if server_version(target) == version.removeprefix("v"):
            return target
        _build(version, target)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build(version: str, target: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise ServerError(
            f"cannot build livekit-server {version}: the Go toolchain (`go`, >= 1.26) is not on "
            f"PATH. Install Go, or point ${SERVER_BINARY_ENV} at an existing livekit-server binary."
        )
    cache_root = target.parent.parent
    log_dir = cache_root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"go-install-{version}.log"
    gobin = Path(tempfile.mkdtemp(prefix=".gobin-", dir=target.parent))
    env = dict(os.environ)
    env.update({"GOBIN": str(gobin), "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"})
    command = [go, "install", f"{LIVEKIT_SERVER_MODULE}@{version}"]
    nice = shutil.which("nice")
    if nice is not None:
        command = [nice, "-n", str(BUILD_NICENESS), *command]
    try:
        with log_path.open("wb") as log:
            try:
                proc = subprocess.run(
                    command,
                    cwd=gobin,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=GO_INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServerError(
                    f"`{' '.join(command)}` did not finish within {GO_INSTALL_TIMEOUT_S:.0f} s; "
                    f"log {log_path}:\n{_tail(log_path)}"
                ) from exc
            except OSError as exc:
                raise ServerError(f"cannot run {go!r}: {exc}") from exc
        if proc.returncode != 0:
            tail = _tail(log_path)
            if any(hint in tail.lower() for hint in _UNKNOWN_VERSION_HINTS):
                reason = f"the Go module proxy cannot serve livekit-server {version}"
            else:
                reason = f"building livekit-server {version} failed (exit {proc.returncode})"
            raise ServerError(f"{reason}; `{' '.join(command)}` log {log_path}:\n{tail}")
        built = gobin / "server"
        found = server_version(built)
        if found != version.removeprefix("v"):
            raise ServerError(
                f"`{' '.join(command)}` produced {built} reporting version {found!r}, "
                f"expected {version.removeprefix('v')!r}; log {log_path}:\n{_tail(log_path)}"
            )
        os.replace(built, target)
    finally:
        shutil.rmtree(gobin, ignore_errors=True)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<log unreadable: {exc}>"
    return "\n".join(text.splitlines()[-lines:])
