"""The fwknop client's ~/.fwknoprc, read as fwknop 2.6 reads it.

A stanza is ``[name]`` (any case); fwknop reads ``[default]`` and then the stanza
asked for, later settings over earlier ones, and nothing else of the file. A setting
is ``NAME value``: NAME is the first word, cut at its last colon (``KEY_BASE64:``) and
case-sensitive; the value is the next word, ending at a blank, ``;`` or ``#``
(``ACCESS tcp/22, udp/53`` asks for ``tcp/22,`` only: sesame warns). A line whose first
character is ``#`` or ``;`` is a comment. Every variable of fwknop 2.6 is either
carried out, without effect (as in fwknop, unless something sesame refuses is used),
or refused by name with the reason; a name fwknop does not know is warned about and
left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from sesame.basics import FWKNOP_PORT
from sesame.compat.fwknop import encryption_mode, mode_fault, read_keyed, unbase64
from sesame.errors import ConfigError
from sesame.wire.fwknop import DIGEST_TYPES, HMAC_TYPES

log = logging.getLogger("sesame")

_VALUE = re.compile(r"[^ ;\t\n\r#]+")
_OFFSET = re.compile(r"([-+]?)(\d{1,5})([smhdSMHD]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RESOLVE = (
    "asking a web service for this host's address (fwknop's -R) is not supported: give"
    " the address (ALLOW_IP), or use sesame's client config, whose public_address asks STUN"
)
_GPG = "GnuPG is not supported: use Rijndael keys (KEY_BASE64) with an HMAC key"


@dataclass(frozen=True, slots=True)
class RcStanza:
    """What sesame needs of one ~/.fwknoprc stanza to build an fwknop datagram."""

    name: str
    server: str  # SPA_SERVER, or -D
    port: int
    access: str
    allow_ip: str | None  # an address, "source" (0.0.0.0) or None (this host's)
    key: bytes = field(repr=False)
    hmac_key: bytes | None = field(repr=False)
    hmac_type: str = "sha256"
    fw_timeout: int = 0
    user: str | None = None
    digest_type: str = "sha256"
    mode: str = "cbc"
    source_port: int = 0
    random_port: bool = False
    time_offset: int = 0  # seconds added to the timestamp
    ipv4_only: bool = False
    verbose: bool = False
    nat_access: str = ""  # "IP,PORT": fwknop's -N
    nat_local: bool = False
    nat_port: int = 0
    nat_rand_port: bool = False


Setting = tuple[int, str, str]  # line, NAME, value
SECRETS = {  # never in a log line
    "KEY",
    "KEY_BASE64",
    "HMAC_KEY",
    "HMAC_KEY_BASE64",
    "GPG_SIGNING_PW",
    "GPG_SIGNING_PW_BASE64",
}


def read(text: str, path: str) -> dict[str, list[Setting]]:
    """Each stanza's settings (by lower-case name), in file order; a setting outside any
    stanza is ignored, as fwknop ignores it, and said."""
    stanzas: dict[str, list[Setting]] = {}
    current: list[Setting] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or line[0] in "#;" or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            if "]" not in stripped:
                raise ConfigError(path, number, "a stanza name needs its closing ]")
            name = stripped[1 : stripped.index("]")]
            current = stanzas.setdefault(name.lower(), [])
            continue
        word, _, rest = stripped.replace("\t", " ").partition(" ")
        name = word[: word.rindex(":")] if ":" in word else word
        if current is None:
            log.warning(
                "%s:%d: %s is outside any [stanza]: ignored (fwknop too)", path, number, name
            )
            continue
        rest = rest.lstrip(" \t")
        value = _VALUE.match(rest)
        if value is None:
            raise ConfigError(path, number, f"{name} has no value")
        after = rest[value.end() :].strip()
        if after and after[0] not in "#;":
            shown = "its first word" if name in SECRETS else repr(value.group())
            log.warning(
                "%s:%d: fwknop reads %s as %s; the rest of the line is ignored",
                path,
                number,
                name,
                shown,
            )
        current.append((number, name, value.group()))
    return stanzas


@dataclass
class _Options:
    """fwknop's options as the settings of [default] and then a stanza set them."""

    path: str
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    resolve: tuple[int, str] = (0, "")  # the line and name that asked for -R, if any
    hmac: int = 0  # the line that asked for an HMAC (USE_HMAC, or an HMAC key), or 0

    def set(self, key: str, number: int, value: str) -> None:
        self.values[key] = value
        self.lines[key] = number

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.lines.get(key, 0), reason)


def is_yes(value: str) -> bool:
    """The fwknop client's yes: Y, in either case, and nothing else."""
    return value.upper() == "Y"


def _verbose(value: str) -> str:
    if value.upper() in ("Y", "N") or value.isdigit():
        return value
    raise ValueError(f"{value!r} is not Y, N or a level")


def _port(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{value!r} is not a port (1 to 65535)")
    return value


def _seconds(value: str) -> str:
    if not value.isdigit() or int(value) > 65536:
        raise ValueError(f"{value!r} is not a number of seconds (0 to 65536)")
    return value


def _offset(value: str) -> str:
    found = _OFFSET.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not an offset: [-]N, with s, m, h or d after N")
    sign, number, unit = found.groups()
    seconds = int(number) * _UNITS[unit.lower()]
    return str(-seconds if sign == "-" else seconds)


def _choice(kind: str, known: tuple[str, ...] | dict[str, int]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value.lower() not in known:
            raise ValueError(f"{value!r} is not {kind}: one of " + ", ".join(known))
        return value.lower()

    return check


def _allow(value: str) -> str:
    if value.lower() in ("source", "resolve"):
        return value.lower()
    ip_address(value)  # ValueError names it
    return value


def _proto(value: str) -> str:
    if value.lower() == "udp":
        return "udp"
    if value.lower() in ("tcp", "http", "tcpraw", "udpraw", "icmp"):
        raise ValueError(f"{value}: sesame sends SPA over UDP only")
    raise ValueError(f"{value!r} is not a protocol")


def nat_access(value: str) -> str:
    """fwknop's ``-N``: ``IP,PORT`` (or ``IP:PORT``), as the message carries it."""
    host, _, number = value.replace(",", ":").rpartition(":")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise ValueError(f"{value!r} is not ADDRESS,PORT")
    return f"{ip_address(host.strip('[]'))},{number}"


def _base64(value: str) -> str:
    unbase64(value)
    return value


def _refused(reason: str) -> Callable[[str], str]:
    def refuse(value: str) -> str:
        raise ValueError(reason)

    return refuse


def _refused_if_yes(reason: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if is_yes(value):
            raise ValueError(reason)
        return value

    return check


# No effect unless what sesame refuses is asked for (GnuPG, NAT, -R), or none in sesame
# at all (it never saves its arguments):
NO_EFFECT = (
    "USE_GPG_AGENT",
    "GPG_NO_SIGNING_PW",
    "GPG_RECIPIENT",
    "GPG_SIGNER",
    "GPG_HOMEDIR",
    "GPG_EXE",
    "RESOLVE_URL",
    "RESOLVE_HTTP_ONLY",
    "WGET_CMD",
    "USE_WGET_USER_AGENT",
    "HTTP_USER_AGENT",
    "NO_SAVE_ARGS",
)
VARIABLES: dict[str, Callable[[str], str]] = {
    "SPA_SERVER": str,
    "SPA_SERVER_PORT": _port,
    "SPA_SERVER_PROTO": _proto,
    "SPA_SOURCE_PORT": _port,
    "ACCESS": str,
    "ALLOW_IP": _allow,
    "KEY": str,
    "KEY_BASE64": _base64,
    "KEY_FILE": str,
    "HMAC_KEY": str,
    "HMAC_KEY_BASE64": _base64,
    "USE_HMAC": str,
    "HMAC_DIGEST_TYPE": _choice("an HMAC digest", HMAC_TYPES),
    "DIGEST_TYPE": _choice("a digest", DIGEST_TYPES),
    "ENCRYPTION_MODE": encryption_mode,
    "FW_TIMEOUT": _seconds,
    "SPOOF_USER": str,
    "TIME_OFFSET": _offset,
    "RAND_PORT": str,
    "SERVER_RESOLVE_IPV4": str,
    "VERBOSE": _verbose,
    "RESOLVE_IP_HTTP": str,
    "RESOLVE_IP_HTTPS": str,
    "HMAC_KEY_FILE": _refused(
        "fwknop 2.6 takes HMAC_KEY_FILE for KEY_FILE (the encryption key's file):"
        " write HMAC_KEY_BASE64 instead"
    ),
    "SPOOF_SOURCE_IP": _refused(
        "a forged source address needs fwknop's raw modes: sesame sends from this host"
    ),
    "USE_GPG": _refused_if_yes(_GPG),
    "GPG_SIGNING_PW": _refused(_GPG + " (without USE_GPG, fwknop would take it as KEY)"),
    "GPG_SIGNING_PW_BASE64": _refused(_GPG + " (without USE_GPG, fwknop would take it as KEY)"),
    "NAT_ACCESS": nat_access,
    "NAT_LOCAL": str,
    "NAT_RAND_PORT": str,
    "NAT_PORT": _port,
    **dict.fromkeys(NO_EFFECT, str),
}


def options(stanzas: dict[str, list[Setting]], path: str, name: str) -> _Options:
    """[default], then stanza ``name``, applied as fwknop applies them."""
    got = _Options(path)
    for number, key, value in stanzas.get("default", []) + (
        stanzas.get(name.lower(), []) if name.lower() != "default" else []
    ):
        check = VARIABLES.get(key)
        if check is None:
            hint = " (its names are upper case)" if key.upper() in VARIABLES else ""
            log.warning("%s:%d: %s is not an fwknop variable%s: ignored", path, number, key, hint)
            continue
        try:
            value = check(value)
        except ValueError as exc:
            raise ConfigError(path, number, f"{key}: {exc}") from None
        got.set(key, number, value)
        if key == "ALLOW_IP":  # as fwknop: an address given cancels a resolve asked before
            got.resolve = (number, key) if value == "resolve" else (0, "")
        elif key in ("RESOLVE_IP_HTTP", "RESOLVE_IP_HTTPS") and is_yes(value):
            got.resolve = (number, key)
        elif key in ("HMAC_KEY", "HMAC_KEY_BASE64") or (key == "USE_HMAC" and is_yes(value)):
            got.hmac = got.hmac or number  # USE_HMAC N turns nothing off, in fwknop too
    return got


def stanza(got: _Options, name: str, server: str | None = None) -> RcStanza:
    """The stanza fwknop would send with: ``server`` (``-D``) over SPA_SERVER."""
    values, path = got.values, got.path
    if got.resolve[0]:
        raise ConfigError(path, got.resolve[0], f"{got.resolve[1]}: {_RESOLVE}")
    server = server or values.get("SPA_SERVER")
    if not server:
        raise ConfigError(path, 0, f"[{name}] has no SPA_SERVER: give the server (-D)")
    key = _key(got, server)
    hmac_key: bytes | None = None
    if "HMAC_KEY" in values:  # fwknop takes HMAC_KEY over HMAC_KEY_BASE64
        hmac_key = values["HMAC_KEY"].encode()
    elif "HMAC_KEY_BASE64" in values:
        hmac_key = unbase64(values["HMAC_KEY_BASE64"])
    if got.hmac and not hmac_key:
        raise ConfigError(path, got.hmac, "USE_HMAC Y, but no HMAC_KEY_BASE64 (or HMAC_KEY)")
    if hmac_key is not None and hmac_key == key:
        raise got.fail("HMAC_KEY_BASE64", "the HMAC key is the encryption key: give each its own")
    mode = values.get("ENCRYPTION_MODE", "cbc")
    fault = mode_fault(mode, hmac_key is not None)
    if fault is not None:
        raise got.fail("ENCRYPTION_MODE", f"ENCRYPTION_MODE: {fault}")
    return RcStanza(
        name=name,
        server=server,
        port=int(values.get("SPA_SERVER_PORT", FWKNOP_PORT)),
        access=values.get("ACCESS", ""),
        allow_ip=values.get("ALLOW_IP"),
        key=key,
        hmac_key=hmac_key,
        hmac_type=values.get("HMAC_DIGEST_TYPE", "sha256"),
        fw_timeout=int(values.get("FW_TIMEOUT", 0)),
        user=values.get("SPOOF_USER"),
        digest_type=values.get("DIGEST_TYPE", "sha256"),
        mode=mode,
        source_port=int(values.get("SPA_SOURCE_PORT", 0)),
        random_port=is_yes(values.get("RAND_PORT", "N")),
        time_offset=int(values.get("TIME_OFFSET", 0)),
        ipv4_only=is_yes(values.get("SERVER_RESOLVE_IPV4", "N")),
        verbose=values.get("VERBOSE", "N").upper() not in ("N", "0"),
        nat_access=values.get("NAT_ACCESS", ""),
        nat_local=is_yes(values.get("NAT_LOCAL", "N")),
        nat_port=int(values.get("NAT_PORT", 0)),
        nat_rand_port=is_yes(values.get("NAT_RAND_PORT", "N")),
    )


def _key(got: _Options, server: str) -> bytes:
    """The encryption key, taken as fwknop takes it: KEY, else KEY_BASE64, else the line
    ``SERVER: key`` of KEY_FILE."""
    values = got.values
    if "KEY" in values:
        key = values["KEY"].encode()
    elif "KEY_BASE64" in values:
        key = unbase64(values["KEY_BASE64"])
    elif "KEY_FILE" in values:
        key = key_from_file(got, values["KEY_FILE"], server)
    else:
        gpg = [k for k in values if k.startswith("GPG_")]
        also = f"; GnuPG ({gpg[0]}) is not supported" if gpg else ""
        raise ConfigError(got.path, 0, f"no KEY_BASE64 (or KEY, or KEY_FILE){also}")
    if values.get("KEY", values.get("KEY_BASE64", "")).upper() == "__CHANGEME__":
        raise got.fail("KEY_BASE64", "the key is still __CHANGEME__: set a key (fwknop --key-gen)")
    return key


def key_from_file(got: _Options, path: str, server: str) -> bytes:
    """fwknop's key file: lines ``SERVER: key``; the last line for ``server`` counts."""
    text = read_keyed(path, got.path, got.lines["KEY_FILE"])
    key = b""
    for line in text.splitlines():
        line = line.lstrip(" \t=")
        if line.startswith(f"{server}:"):
            key = line[len(server) + 1 :].lstrip(" \t=").encode()
    if not key:
        raise got.fail("KEY_FILE", f"{path} has no line '{server}: KEY'")
    return key


def choose(
    stanzas: dict[str, list[Setting]], named: str | None, host: str | None, destination: str | None
) -> tuple[str | None, str | None]:
    """The stanza and the server, as fwknop picks them: ``-n NAME`` (None when the file
    has no such stanza), else HOST when it names a stanza, else [default]; the server
    is ``-D``, else a HOST that names no stanza, else the stanza's SPA_SERVER (None)."""
    if named:
        return (named if named.lower() in stanzas else None), destination or host
    if host and host.lower() in stanzas:
        return host, destination
    return "default", destination or host


def parse(text: str, path: str, name: str, server: str | None = None) -> RcStanza:
    """Stanza ``name`` of a .fwknoprc (over its [default]); ``server`` is ``-D``."""
    stanzas = read(text, path)
    if name.lower() not in stanzas and name.lower() != "default":
        raise ConfigError(path, 0, f"no stanza [{name}]")
    return stanza(options(stanzas, path, name), name, server)


def load(path: str, name: str, server: str | None = None) -> RcStanza:
    """Read a .fwknoprc, refused (as fwknop refuses it) if others may read it."""
    return parse(read_keyed(path), path, name, server)
