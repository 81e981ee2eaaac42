"""``sesame knock --fwknop``: fwknop's SPA format, to fwknopd or to sesame serving an
access.conf, from a ~/.fwknoprc stanza, a ``[[fwknop]]`` of the client config, or flags,
chosen as fwknop chooses (``-n``, ``-D``)."""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import secrets
import socket
import sys
import time
from ipaddress import ip_address

from sesame import clientconfig
from sesame.basics import FWKNOP_PORT
from sesame.cli.plans import Plan
from sesame.compat import fwknoprc
from sesame.compat.fwknop import mode_fault, read_keyed
from sesame.wire import fwknop as wire

RAND_PORTS = (10000, 65535)  # fwknop's -r: a random port from here


def options(p: argparse.ArgumentParser) -> None:
    fw = p.add_argument_group(
        "fwknop",
        "Send fwknop's SPA format, to a server running fwknopd (or sesame serving an"
        " access.conf). The stanza is -n NAME, or HOST when it names one (in the client"
        " config's [[fwknop]], else in the rc file); fwknop reads [default] first. With"
        " -D, or a HOST that names no stanza, that host is the server. Flags win over"
        " the stanza.",
    )
    fw.add_argument("--fwknop", action="store_true", help="send an fwknop SPA datagram")
    fw.add_argument(
        "--fwknop-rc", "--rc-file", metavar="FILE", help="the rc file (default ~/.fwknoprc)"
    )
    fw.add_argument("-n", "--named-config", metavar="NAME", help="the stanza to use")
    fw.add_argument("-D", "--destination", metavar="HOST", help="the server (over SPA_SERVER)")
    fw.add_argument(
        "-A",
        "--access",
        metavar="PROTO/PORT",
        help="what to open, e.g. tcp/22 or tcp/22,udp/53 (else the stanza's ACCESS)",
    )
    fw.add_argument(
        "-s",
        "--source-any",
        action="store_true",
        help="ask the server to use the datagram's source (0.0.0.0)",
    )
    fw.add_argument(
        "-f",
        "--fw-timeout",
        type=int,
        metavar="SECONDS",
        help="ask for this timeout (capped by the server)",
    )
    fw.add_argument("-U", "--spoof-user", metavar="USER", help="the user name to send")
    fw.add_argument("--fwknop-key-base64", metavar="KEY", help="Rijndael key, base64")
    fw.add_argument("--fwknop-hmac-key-base64", metavar="KEY", help="HMAC key, base64")
    fw.add_argument(
        "--hmac-digest-type",
        metavar="TYPE",
        choices=list(wire.HMAC_TYPES),
        help="HMAC digest: " + ", ".join(wire.HMAC_TYPES) + " (default sha256)",
    )
    fw.add_argument(
        "--digest-type",
        metavar="TYPE",
        choices=list(wire.DIGEST_TYPES),
        help="the digest inside: " + ", ".join(wire.DIGEST_TYPES) + " (default sha256)",
    )
    fw.add_argument(
        "-N", "--nat-access", metavar="HOST:PORT", help="a NAT request: reach HOST:PORT"
    )
    fw.add_argument("--nat-local", action="store_true", help="a NAT request to the server itself")
    fw.add_argument("--nat-port", type=int, metavar="PORT", help="the server's port to rewrite")
    fw.add_argument("--nat-rand-port", action="store_true", help="a random port to rewrite")
    fw.add_argument(
        "-M",
        "--encryption-mode",
        metavar="MODE",
        type=str.lower,
        choices=list(wire.MODES),
        help="cbc (default), ctr, cfb, ofb, or legacy (fwknop before 2.0, no HMAC)",
    )


def _random_port() -> int:
    first, last = RAND_PORTS
    return first + secrets.randbelow(last - first + 1)


def _from_flags(args: argparse.Namespace) -> fwknoprc.RcStanza:
    server = args.destination or args.host
    if not server:
        raise ValueError("give the server: HOST or -D HOST")
    try:
        key = base64.b64decode(args.fwknop_key_base64, validate=True)
        hmac_key = (
            base64.b64decode(args.fwknop_hmac_key_base64, validate=True)
            if args.fwknop_hmac_key_base64
            else None
        )
    except ValueError:
        raise ValueError("a key given on the command line is not valid base64") from None
    return fwknoprc.RcStanza("command line", server, FWKNOP_PORT, "", None, key, hmac_key)


def stanza(args: argparse.Namespace) -> fwknoprc.RcStanza:
    """The stanza to send with, from flags, the client config or the rc file."""
    if args.fwknop_key_base64:
        return _from_flags(args)
    wanted = args.named_config, args.host, args.destination
    if not args.fwknop_rc:
        path = args.client_config or os.path.expanduser(clientconfig.DEFAULT)
        if args.client_config or os.path.exists(path):
            entries = clientconfig.fwknop(path)
            name, server = fwknoprc.choose(entries, *wanted)
            if name is not None and name.lower() in entries:
                return fwknoprc.stanza(fwknoprc.options(entries, path, name), name, server)
    path = os.path.expanduser(args.fwknop_rc or "~/.fwknoprc")
    stanzas = fwknoprc.read(read_keyed(path), path)
    name, server = fwknoprc.choose(stanzas, *wanted)
    if name is None:
        raise ValueError(f"no stanza [{args.named_config}] in {path}")
    return fwknoprc.stanza(fwknoprc.options(stanzas, path, name), name, server)


def plan(args: argparse.Namespace) -> Plan:
    """fwknop's datagram to the stanza's server: ACCESS (or -A, or tcp/PORT for
    ``sesame connect``), open for this host's address toward the one knocked on."""
    from sesame import client

    rc = stanza(args)
    port = getattr(args, "port", None)
    access = args.access or rc.access or (f"tcp/{port}" if port else "")
    if not access:
        raise ValueError("nothing to ask for: give -A tcp/22 (or ACCESS in the stanza)")
    access, nat, local_port = _nat(args, rc, access)
    mode = args.encryption_mode or rc.mode
    fault = mode_fault(mode, rc.hmac_key is not None)
    if fault is not None:
        raise ValueError(f"encryption mode: {fault}")
    if mode == "legacy" and len(rc.key) > 16:  # as fwknop: said, and cut
        print("sesame: warning: legacy mode uses the first 16 bytes of the key", file=sys.stderr)

    def knock(family: int, address: str, send: bool) -> tuple[str, str]:
        spa_port = args.spa_port or (_random_port() if rc.random_port else rc.port)
        allow = args.allow_ip or ("source" if args.source_any else rc.allow_ip)
        if allow is None:
            allow = client.local_address(family, address, spa_port, args.source)
        elif allow.lower() == "source":
            allow = "0.0.0.0"
        ip_address(allow)  # a ValueError names a bad address before anything is sent
        payload = wire.encode(
            args.spoof_user or rc.user or getpass.getuser(),
            f"{allow},{access}",
            rc.key,
            rc.hmac_key,
            timestamp=int(time.time()) + rc.time_offset,
            client_timeout=args.fw_timeout if args.fw_timeout is not None else rc.fw_timeout,
            hmac_type=args.hmac_digest_type or rc.hmac_type,
            digest_type=args.digest_type or rc.digest_type,
            mode=mode,
            nat_access=f"{address},{local_port}" if local_port else nat,
            local_nat=bool(local_port),
        )
        if send:
            client.send_spa(family, address, spa_port, payload, args.source, rc.source_port)
        said = f"sent fwknop SPA to {address}:{spa_port}/udp: {allow},{access}"
        if rc.verbose and send and not args.verbose:  # VERBOSE in the stanza
            print(f"sesame: {said}", file=sys.stderr)
        return payload.decode(), said

    only = socket.AF_INET if rc.ipv4_only and not args.ipv6 else socket.AF_UNSPEC
    return Plan(rc.server, knock, _first_tcp(access), only)


def _nat(args: argparse.Namespace, rc: fwknoprc.RcStanza, access: str) -> tuple[str, str, str]:
    """fwknop's NAT request: the access with the server's port to rewrite first, the
    destination ("IP,PORT"), and for --nat-local, the port of the server's own behind
    it (the server's address is the one knocked on); empty strings without one."""
    wanted = fwknoprc.nat_access(args.nat_access) if args.nat_access else rc.nat_access
    local = args.nat_local or rc.nat_local
    if not (wanted or local):
        return access, "", ""
    proto, _, number = access.split(",")[0].partition("/")
    server_port = args.nat_port or rc.nat_port or int(number)
    if args.nat_rand_port or rc.nat_rand_port:
        server_port = _random_port()
    return f"{proto}/{server_port}", "" if local else wanted, number if local else ""


def _first_tcp(access: str) -> int | None:
    for item in access.split(","):
        proto, _, number = item.strip().partition("/")
        if proto.lower() == "tcp" and number.isdigit():
            return int(number)
    return None
