"""``sesame serve``, ``sesame check`` and ``sesame import``: the server's config,
from sesame's TOML, a knockd.conf or an fwknopd access.conf."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Callable

from sesame import config as configuration
from sesame import host
from sesame.basics import FWKNOP_PORT
from sesame.cli import common
from sesame.errors import ConfigError, SesameError
from sesame.files import open_owned, unwritable
from sesame.logs import FORMAT, Escaping, Held, Journal, Json, plural, under_journal
from sesame.privileges import drop_to


def add(sub: common.Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Run the daemon in the foreground, logging to stderr. "
        "SIGTERM/SIGINT stop it (the table stays: ports stay closed, grants "
        "expire in the kernel); SIGHUP reloads the config, keeping live grants; "
        "a bad new config is refused and the old one keeps running; SIGUSR1 logs the "
        "counters. Needs root.",
    )
    common.source_options(p)
    p.add_argument(
        "-i",
        "--interface",
        metavar="IFACE",
        help="with --knockd-conf: the interface (as knockd's -i)",
    )
    p.add_argument(
        "--fwknop-port",
        type=int,
        default=FWKNOP_PORT,
        metavar="PORT",
        help=f"with --fwknop-access: the SPA port (default {FWKNOP_PORT})",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where replay windows are kept (default /var/lib/sesame)"
    )
    common.user_option(p, "run as USER with the capability CAP_NET_ADMIN alone (start as root)")
    p.add_argument(
        "--control",
        metavar="PATH",
        help="listen for sesame status, revoke, reload and counters on this Unix socket"
        " (mode 0660: the daemon's user and group may ask), e.g. /run/sesame/control",
    )
    common.verbose(p, "log every knock and every dropped packet")
    p.set_defaults(func=serve)

    p = sub.add_parser(
        "check",
        help="validate a config file",
        description="Validate a config file (sesame's, a knockd.conf or an fwknopd "
        "access.conf): exit 0, or print FILE:LINE: reason and exit 2. Touches nothing.",
    )
    common.source_options(p)
    p.add_argument(
        "--other-host",
        action="store_true",
        help="accept an interface this host does not have (a config written for another)",
    )
    common.user_option(p, "check as USER, the user sesame will run as (start as root)")
    p.set_defaults(func=check, interface=None, fwknop_port=FWKNOP_PORT, state_dir=None)

    p = sub.add_parser(
        "import",
        help="print a knockd.conf or an access.conf as sesame's TOML, or a .fwknoprc as"
        " client config",
        description="Print the sesame config equivalent to a knockd.conf or an fwknopd "
        "access.conf, commented where sesame has a better form; or, for an fwknop "
        "client's ~/.fwknoprc, the client config's [[fwknop]] tables (for "
        "`sesame knock --fwknop NAME`).",
    )
    p.add_argument("kind", choices=["knockd", "fwknop"], help="the file's kind")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=import_)


def _loader(args: argparse.Namespace) -> Callable[[], configuration.Config]:
    """How ``serve`` (and ``import``) read the config: sesame's TOML, a knockd.conf or an
    fwknopd access.conf, with command-line overrides."""

    def load() -> configuration.Config:
        if args.knockd_conf:
            from sesame.compat import knockd

            config = knockd.load(args.knockd_conf, interface=args.interface)
        elif args.fwknop_access:
            from sesame.compat import fwknop

            stanzas = fwknop.load_access(args.fwknop_access, args.fwknop_port)
            config = configuration.Config(
                args.fwknop_access, configuration.Server(), (), (), stanzas
            )
        else:
            config = configuration.load(args.config)
        if args.state_dir:
            server = dataclasses.replace(config.server, state_dir=args.state_dir)
            config = dataclasses.replace(config, server=server)
        return config

    return load


def serve(args: argparse.Namespace) -> int:
    # The collector waits until the daemon has started (service.loop.settle): what it
    # builds meanwhile (the config, 100,000 grant elements listed) is no garbage, and
    # collecting as it grows only walks it again and again.
    gc.disable()
    from sesame.firewall import NftGate
    from sesame.sensor import NflogSensor
    from sesame.sensor.monitor import TableMonitor
    from sesame.service.loop import serve

    if args.user:
        drop_to(args.user)  # before the config, the keys or any packet is read
    load = _loader(args)
    config = load()
    _log_outputs(config.server)
    sensor = NflogSensor(config.server.log_group)
    known: NflogSensor | None = None
    try:
        known = NflogSensor(config.server.known_log_group, "known_log_group")
        gate = NftGate(config.server.table)
        monitor = TableMonitor(config.server.table, gate.portid)
    except SesameError:
        sensor.close()
        if known is not None:
            known.close()
        raise
    pid_file = config.server.pid_file
    if pid_file:
        with open(open_owned(pid_file, truncate=True), "w") as handle:
            handle.write(f"{os.getpid()}\n")
    try:
        return serve(load, gate, sensor, monitor, args.control, config, known)
    finally:
        if pid_file:
            with contextlib.suppress(OSError):
                os.unlink(pid_file)


def _log_outputs(server: configuration.Server) -> None:
    """Besides stderr: a log file and syslog, when the config asks (knockd's options);
    every output in JSON with ``log_format = "json"``. The log file is opened without
    following a link, and must be sesame's own."""
    root = logging.getLogger("sesame")
    json = server.log_format == "json"
    # No output of sesame's names the caller's file or thread: don't look them up for
    # every line (the logging HOWTO's "Optimization"; a grant logs one line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    if under_journal(os.environ):  # under systemd: to the journal, with the fields
        top = logging.getLogger()
        for output in list(top.handlers):
            top.removeHandler(output)
        top.addHandler(Journal())
    else:  # stderr, its lines written once a turn of the loop (see logs.Held)
        top = logging.getLogger()
        for output in list(top.handlers):
            top.removeHandler(output)
        held = Held(os.dup(2))
        held.setFormatter(Json() if json else Escaping(FORMAT))
        top.addHandler(held)
    if server.log_file:
        handler: logging.Handler = Held(open_owned(server.log_file, append=True))
        handler.setFormatter(Json() if json else Escaping(FORMAT))
        root.addHandler(handler)
    if server.syslog:
        if os.path.exists("/dev/log"):
            handler = logging.handlers.SysLogHandler("/dev/log")
            prefix = "sesame[%(process)d]: "
            handler.setFormatter(Json(prefix) if json else Escaping(prefix + "%(message)s"))
            root.addHandler(handler)
        else:
            root.warning("syslog asked for, but /dev/log is missing: logging to stderr only")


def check(args: argparse.Namespace) -> int:
    if args.user:
        drop_to(args.user)  # what follows is checked as that user
    config = _loader(args)()
    server = config.server
    for key, path, directory in (
        ("state_dir", server.state_dir if config.needs_state else None, True),
        ("pid_file", server.pid_file, False),
        ("log_file", server.log_file, False),
    ):
        why = None if path is None else unwritable(path, directory)
        if why is not None:
            raise ConfigError(config.path, _line_of(config.path, key), f"{key}: {why}")
    missing = host.missing_interface(config.server.interface)
    if missing and not args.other_host:
        raise ConfigError(
            config.path,
            _line_of(config.path, "interface"),
            f"{missing}: knocks and SPA would be ignored; --other-host checks a config"
            " written for another host",
        )
    names = [d.name for d in config.doors] + [s.name for s in config.fwknop]
    print(f"{config.path}: ok, {plural(len(names), 'door')}: " + ", ".join(names))
    if host.can_admin_network() and not args.other_host:  # the kernel's other tables
        from sesame.firewall import bypass
        from sesame.firewall.libnft import Nft

        nft = Nft()
        try:
            listing = nft.json("list ruleset")
        finally:
            nft.close()
        for line in bypass.warnings(listing, server.table, config.guarded):
            print(f"sesame: {line}", file=sys.stderr)
    return 0


def _line_of(path: str, key: str) -> int:
    """The line where ``key = ...`` is set in a config file (sesame's TOML or a
    knockd.conf), or 1 (the key was left to its default)."""
    pattern = re.compile(rf"^\s*{key}\s*=", re.IGNORECASE)
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if pattern.match(line):
                return number
    return 1


def import_(args: argparse.Namespace) -> int:
    if args.kind == "knockd":
        from sesame.compat import knockd

        print(knockd.to_toml(args.file), end="")
        missing = host.missing_interface(knockd.load(args.file).server.interface)
        if missing:
            print(f"sesame: note: {missing}; change interface before serving", file=sys.stderr)
    else:
        from sesame.compat import fwknop, fwknoprc_toml

        if fwknoprc_toml.is_rc(fwknop.read_keyed(args.file)):
            print(fwknoprc_toml.to_toml(args.file), end="")
        else:
            print(fwknop.to_toml(args.file), end="")
    return 0
