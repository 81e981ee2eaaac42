"""The ``sesame`` command: one module per group of commands, each with ``add``
(its subcommands' options) and the functions that run them."""

from __future__ import annotations

import argparse
import logging
import sys

from sesame import __version__
from sesame.cli import common, connect, grants, keygen, knock, lab, serve
from sesame.errors import ConfigError, SesameError
from sesame.logs import FORMAT, Escaping

DESCRIPTION = """\
sesame: port knocking for Linux. The host shows no open ports; a client who sends
the right knock gets the guarded port opened to its own address, for a while, in
sesame's own nftables table. Grants expire in the kernel, even if sesame dies."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sesame", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"sesame {__version__}")
    common.verbose(top, "log every knock and every dropped packet", top=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for group in (serve, knock, connect, keygen, grants, lab):
        group.add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(Escaping(FORMAT))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[stderr])
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (SesameError, ValueError, OSError) as exc:
        print(f"sesame: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
