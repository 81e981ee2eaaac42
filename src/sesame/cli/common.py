"""Options and checks more than one command shares, each defined once."""

from __future__ import annotations

import argparse
import json
import socket
from typing import TYPE_CHECKING, Any, TypeAlias

from sesame import clientconfig, host
from sesame.basics import FWKNOP_PORT
from sesame.errors import SesameError
from sesame.service.control import DEFAULT, VERSION

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def verbose(p: argparse.ArgumentParser, what: str, top: bool = False) -> None:
    """``-v``: on the top parser, or on a command (where it may come after it)."""
    default = False if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="store_true", default=default, help=what)


def config_option(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-c", "--config", required=required, metavar="FILE", help="config file (TOML)")


def control_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--control",
        default=DEFAULT,
        metavar="PATH",
        help=f"the running daemon's control socket (default {DEFAULT})",
    )


def ask(path: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """Ask the daemon listening on ``path``; None when none does."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(30.0)
    with sock:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        except PermissionError:
            raise SesameError(
                f"permission denied: {path}; only root and the members of the daemon's"
                " group may ask it (add yourself to the group, log in again)"
            ) from None
        sock.sendall(json.dumps({"version": VERSION, **request}).encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise SesameError(f"the daemon on {path} gave no answer") from None
    return answer


def source_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", metavar="FILE", help="sesame's config file (TOML)")
    source.add_argument("--knockd-conf", metavar="FILE", help="a knockd 0.8 knockd.conf")
    source.add_argument(
        "--fwknop-access", metavar="FILE", help="an fwknopd access.conf (fwknop clients' SPA)"
    )


def keyed_options(p: argparse.ArgumentParser, door_required: bool = False) -> None:
    p.add_argument(
        "--door",
        required=door_required,
        metavar="DOOR",
        help="the door to open by key (SPA, or a one-time sequence)",
    )
    p.add_argument(
        "--client-config",
        metavar="FILE",
        help=f"client config (default {clientconfig.DEFAULT}; must be mode 600)",
    )
    p.add_argument("--user", metavar="NAME", help="user name, when HOST is not in the config")
    p.add_argument("--key-file", metavar="FILE", help="file holding the user's base64 key")
    p.add_argument("--spa-port", type=int, metavar="PORT", help=f"SPA port (default {FWKNOP_PORT})")


def family(args: argparse.Namespace) -> int:
    return socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else socket.AF_UNSPEC


def need_admin(command: str) -> None:
    """Refuse, saying why, a command that reads or changes the kernel's tables without
    the right to (it would see no table, no grant, and say so wrongly)."""
    if not host.can_admin_network():
        raise SesameError(f"{command} {host.NEEDS_ADMIN}, to read sesame's table")


def user_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--user", metavar="USER", help=what)
