"""fwknopd's access.conf (the client's ~/.fwknoprc is :mod:`sesame.compat.fwknoprc`).

Every access.conf option either works or is refused by name at load, with its line.
sesame is stricter than fwknopd in two places, on purpose: the address inside a datagram
must be its source (fwknopd does not check; an on-path attacker could replay a dropped
datagram from elsewhere) unless SESAME_ALLOW_OTHER_ADDRESS is Y, and "-s" (0.0.0.0) is
accepted only where a stanza says REQUIRE_SOURCE_ADDRESS N explicitly.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any, TypeVar

from sesame.basics import FWKNOP_PORT, Port, parse_port
from sesame.crypto import read_private
from sesame.doors import FwknopStanza, Network
from sesame.errors import ConfigError, FieldError
from sesame.wire.fwknop import HMAC_TYPES, MODES

log = logging.getLogger("sesame")

ACCESS_KEYS = {
    "SOURCE",
    "DESTINATION",
    "OPEN_PORTS",
    "RESTRICT_PORTS",
    "KEY",
    "KEY_BASE64",
    "HMAC_KEY",
    "HMAC_KEY_BASE64",
    "HMAC_DIGEST_TYPE",
    "FW_ACCESS_TIMEOUT",
    "MAX_FW_TIMEOUT",
    "REQUIRE_USERNAME",
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "ACCESS_EXPIRE",
    "ACCESS_EXPIRE_EPOCH",
    "ENCRYPTION_MODE",
    "SESAME_ALLOW_OTHER_ADDRESS",
    "SESAME_LEGACY_NO_HMAC",
    "SESAME_MAX_SPA_PACKET_AGE",
    "FORCE_NAT",
    "FORCE_SNAT",
    "FORCE_MASQUERADE",
    "DISABLE_DNAT",
    "SESAME_NAT_DESTINATIONS",
    "SESAME_LOCAL_NAT",
    "FORWARD_ALL",
    "SESAME_SCOPE",
    "SESAME_ON_STORE_DOWN",
}
REFUSED = {
    "GPG_": "GnuPG mode is not supported (use Rijndael keys with an HMAC key)",
    "ENABLE_CMD_EXEC": "command execution by SPA is not supported",
    "ENABLE_CMD_SUDO_EXEC": "command execution by SPA is not supported",
    "CMD_": "command execution by SPA is not supported",
    "SUDO_EXE": "command execution by SPA is not supported",
    "%INCLUDE": "include directives are not supported: give one file",
}


ENCRYPTION_REFUSED = {
    "ecb": "ECB is refused: it encrypts equal blocks alike; use CBC (fwknop's default)",
    "pcbc": "PCBC is refused: fwknop does not offer it either",
    "asymmetric": "asymmetric mode is GnuPG, which sesame does not support",
}


def encryption_mode(value: str) -> str:
    """fwknop's ENCRYPTION_MODE (any case): cbc, ctr, cfb, ofb or legacy."""
    mode = value.strip().lower()
    if mode in ENCRYPTION_REFUSED:
        raise ValueError(ENCRYPTION_REFUSED[mode])
    if mode not in MODES:
        raise ValueError(f"{value.strip()!r} is not a mode: CBC, CTR, CFB, OFB or legacy")
    return mode


def mode_fault(mode: str, hmac: bool) -> str | None:
    """Why ``mode`` cannot be used with or without an HMAC key, or None."""
    if mode == "legacy" and hmac:
        return "legacy mode carries no HMAC (fwknop's client refuses the pair): use CBC"
    if mode in ("ctr", "cfb", "ofb") and not hmac:
        return (
            f"{mode.upper()} without an HMAC lets anyone on the path flip bits of the"
            " request (the address in it): give an HMAC key"
        )
    return None


def _refusal(key: str) -> str | None:
    for prefix, reason in REFUSED.items():
        if key.startswith(prefix):
            return reason
    return None


def _lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, KEY, value) for each directive, as fwknopd reads its files: a line
    whose first character is ``#`` or ``;`` is a comment; the key is the first word
    (spaces or tabs after it), without a trailing colon (``KEY_BASE64:``), and its
    case matters (``key`` is not ``KEY``); the value runs to the first ``;``
    (``KEY secret;  # note``), trailing blanks dropped."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line[0] in "#;":
            continue
        key, _, value = (
            line.partition(" ") if " " in line.split("\t", 1)[0] else line.partition("\t")
        )
        if ":" in key:
            key = key[: key.rindex(":")]
        out.append((number, key, value.split(";", 1)[0].strip()))
    return out


def _whole(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(f"must be a whole number of seconds, not {value.strip()!r}")
    return int(value)


def _date(value: str) -> float:
    try:
        return time.mktime(time.strptime(value.strip(), "%m/%d/%Y"))
    except ValueError:
        raise ValueError(f"must be a date MM/DD/YYYY, not {value.strip()!r}") from None


def _epoch(value: str) -> float:
    if not value.strip().isdigit():
        raise ValueError(f"must be seconds since 1970, not {value.strip()!r}")
    return float(int(value))


T = TypeVar("T")


def _text(value: str) -> str | None:
    return value.strip() or None


def yes(value: str) -> bool:
    """fwknopd's yes: a value starting with Y (any case)."""
    return value.strip()[:1].upper() == "Y"


def unbase64(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


def _networks(value: str) -> tuple[Network, ...]:
    items = [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    if any(v.upper() == "ANY" for v in items):
        return ()
    return tuple(ip_network(v, strict=False) for v in items)


def _force_nat(value: str) -> tuple[str, int]:
    parts = value.split()
    if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 65535:
        raise ValueError(f"needs an address and a port, not {value.strip()!r}")
    return str(ip_address(parts[0])), int(parts[1])  # ValueError names a bad address


def _address(value: str) -> str:
    return str(ip_address(value.strip()))


def _ports(value: str) -> tuple[Port, ...]:
    """fwknop writes ``tcp/22``; sesame's ``22/tcp`` is accepted too."""
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        head, _, tail = item.partition("/")
        out.append(parse_port(f"{tail}/{head}" if head.isalpha() else item))
    return tuple(out)


@dataclass
class _Stanza:
    line: int
    values: dict[str, tuple[int, str]] = field(default_factory=dict)


def parse_access(text: str, path: str, spa_port: int = FWKNOP_PORT) -> tuple[FwknopStanza, ...]:
    """Stanzas of an access.conf; ConfigError (FILE:LINE: reason) on any fault."""
    stanzas: list[_Stanza] = []
    for number, key, value in _lines(text):
        refusal = _refusal(key)
        if refusal is not None:
            raise ConfigError(path, number, f"{key}: {refusal}")
        if key not in ACCESS_KEYS:  # as fwknopd: said, and left out
            hint = " (fwknopd's keys are upper case)" if key.upper() in ACCESS_KEYS else ""
            log.warning("%s:%d: unknown access.conf key %r is ignored%s", path, number, key, hint)
            continue
        if key == "SOURCE":
            stanzas.append(_Stanza(number))
        elif not stanzas:
            raise ConfigError(path, number, f"{key} before the first SOURCE line")
        stanzas[-1].values[key] = (number, value)
        if not value:
            raise ConfigError(path, number, f"{key} needs a value")
    if not stanzas:
        raise ConfigError(path, 1, "no SOURCE stanza")
    return tuple(_stanza(s, f"fwknop{i + 1}", path, spa_port) for i, s in enumerate(stanzas))


def from_toml(
    raw: dict[str, object], name: str, path: str, line: Callable[[str], int]
) -> FwknopStanza:
    """A ``[[fwknop]]`` table of sesame's config: access.conf keys in lower case."""
    values: dict[str, tuple[int, str]] = {}
    spa_port = FWKNOP_PORT
    for key, value in raw.items():
        if key == "name":
            continue
        if key == "spa_port":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(path, line(key), "spa_port must be a port number")
            spa_port = value
            continue
        upper = key.upper()
        refusal = _refusal(upper)
        if refusal is not None:
            raise ConfigError(path, line(key), f"{key}: {refusal}")
        if upper not in ACCESS_KEYS or key != key.lower():
            raise ConfigError(path, line(key), f"unknown key {key!r} in [[fwknop]]")
        if isinstance(value, bool):
            text = "Y" if value else "N"
        elif isinstance(value, list):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        values[upper] = (line(key), text)
    values.setdefault("SOURCE", (line(""), "ANY"))
    return _stanza(_Stanza(line(""), values), name, path, spa_port)


def _stanza(raw: _Stanza, name: str, path: str, spa_port: int) -> FwknopStanza:
    values = raw.values

    def get(key: str, convert: Callable[[str], T], default: T) -> T:
        if key not in values:
            return default
        number, value = values[key]
        try:
            return convert(value)
        except ValueError as exc:
            raise ConfigError(path, number, f"{key}: {exc}") from None

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(path, values.get(key, (raw.line, ""))[0], reason)

    for name_of in ("KEY", "KEY_BASE64", "HMAC_KEY", "HMAC_KEY_BASE64"):
        if values.get(name_of, (0, ""))[1].upper() == "__CHANGEME__":
            raise fail(name_of, f"{name_of} is still __CHANGEME__: set a key (fwknop --key-gen)")
    key = get("KEY_BASE64", unbase64, b"") or get("KEY", str.encode, b"")
    if not key:
        raise fail("SOURCE", "the stanza has no KEY_BASE64 (or KEY)")
    hmac_key = get("HMAC_KEY_BASE64", unbase64, b"") or get("HMAC_KEY", str.encode, b"")
    if not hmac_key and not get("SESAME_LEGACY_NO_HMAC", yes, False):
        raise fail(
            "SOURCE",
            "the stanza has no HMAC_KEY_BASE64: packets without an HMAC are"
            " refused unless SESAME_LEGACY_NO_HMAC Y allows them",
        )
    if hmac_key and hmac_key == key:
        which = "HMAC_KEY_BASE64" if "HMAC_KEY_BASE64" in values else "HMAC_KEY"
        raise fail(which, "the HMAC key is the encryption key: give each its own (fwknopd too)")
    digest = get("HMAC_DIGEST_TYPE", lambda v: v.strip().lower(), "sha256")
    if digest not in HMAC_TYPES:
        raise fail(
            "HMAC_DIGEST_TYPE", f"HMAC_DIGEST_TYPE {digest!r}: one of " + ", ".join(HMAC_TYPES)
        )
    mode = get("ENCRYPTION_MODE", encryption_mode, "cbc")
    fault = mode_fault(mode, bool(hmac_key))
    if fault is not None:
        raise fail("ENCRYPTION_MODE", f"ENCRYPTION_MODE: {fault}")
    if mode == "legacy" and len(key) > 16:
        number = values.get("KEY_BASE64", values.get("KEY", (raw.line, "")))[0]
        log.warning("%s:%d: legacy mode uses the first 16 bytes of the key", path, number)
    expire: float | None = get("ACCESS_EXPIRE_EPOCH", _epoch, None)
    if expire is None:
        expire = get("ACCESS_EXPIRE", _date, None)
    require_source = values.get("REQUIRE_SOURCE_ADDRESS") or values.get("REQUIRE_SOURCE")
    try:
        return FwknopStanza(
            name=name,
            key=key,
            hmac_key=hmac_key or None,
            hmac_type=digest,
            open_ports=get("OPEN_PORTS", _ports, ()),
            restrict_ports=get("RESTRICT_PORTS", _ports, ()),
            sources=get("SOURCE", _networks, ()),
            destinations=get("DESTINATION", _networks, ()),
            fw_access_timeout=get("FW_ACCESS_TIMEOUT", _whole, 30),
            max_fw_timeout=get("MAX_FW_TIMEOUT", _whole, 300),
            require_username=get("REQUIRE_USERNAME", _text, None),
            allow_source_any=require_source is not None and not yes(require_source[1]),
            allow_other_address=get("SESAME_ALLOW_OTHER_ADDRESS", yes, False),
            access_expire=expire,
            spa_port=spa_port,
            max_age=get("SESAME_MAX_SPA_PACKET_AGE", _whole, 120),
            encryption_mode=mode,
            scope=get("SESAME_SCOPE", _text, None) or "local",
            on_store_down=get("SESAME_ON_STORE_DOWN", _text, None),
            **_nat(values, get, fail),
        )
    except ValueError as exc:
        key_name = "OPEN_PORTS" if "OPEN_PORTS" in str(exc) else "SOURCE"
        if isinstance(exc, FieldError):
            key_name = exc.key
        if str(exc).startswith("stanza name"):
            raise ConfigError(path, raw.line, str(exc)) from None
        raise fail(key_name, str(exc)) from None


def _nat(
    values: dict[str, tuple[int, str]],
    get: Callable[[str, Callable[[str], Any], Any], Any],
    fail: Callable[[str, str], ConfigError],
) -> dict[str, Any]:
    """A stanza's NAT keys, checked as fwknopd checks them."""
    nat: dict[str, Any] = {
        "force_nat": get("FORCE_NAT", _force_nat, None),
        "nat_destinations": get("SESAME_NAT_DESTINATIONS", _networks, ()),
        "local_nat": get("SESAME_LOCAL_NAT", yes, False),
        "disable_dnat": get("DISABLE_DNAT", yes, False),
        "force_masquerade": get("FORCE_MASQUERADE", yes, False),
        "force_snat": get("FORCE_SNAT", _address, None),
        "forward_all": get("FORWARD_ALL", yes, False),
    }
    for key in ("FORCE_SNAT", "FORCE_MASQUERADE"):
        if key in values and nat["force_nat"] is None:
            raise fail(key, f"{key} needs FORCE_NAT (the destination whose traffic it rewrites)")
    if nat["forward_all"] and nat["force_nat"] is None and not nat["nat_destinations"]:
        raise fail("FORWARD_ALL", "FORWARD_ALL needs FORCE_NAT or SESAME_NAT_DESTINATIONS")
    if "SESAME_NAT_DESTINATIONS" in values and not nat["nat_destinations"]:
        raise fail("SESAME_NAT_DESTINATIONS", "SESAME_NAT_DESTINATIONS ANY is refused: name them")
    return nat


def read_keyed(path: str, where: str | None = None, line: int = 0) -> str:
    """A file holding keys, refused (as fwknop refuses it) if others may read it; the
    refusal names ``where:line`` (the file that named it) when given, else the file."""
    try:
        return read_private(path).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(where or path, line, str(exc)) from None


def load_access(path: str, spa_port: int = FWKNOP_PORT) -> tuple[FwknopStanza, ...]:
    return parse_access(read_keyed(path), path, spa_port)


_YN = {
    "REQUIRE_SOURCE_ADDRESS",
    "REQUIRE_SOURCE",
    "SESAME_ALLOW_OTHER_ADDRESS",
    "SESAME_LEGACY_NO_HMAC",
}
_INTS = {"FW_ACCESS_TIMEOUT", "MAX_FW_TIMEOUT", "ACCESS_EXPIRE_EPOCH", "SESAME_MAX_SPA_PACKET_AGE"}


def _toml_value(key: str, value: str) -> str:
    if key in _YN:
        return "true" if yes(value) else "false"
    if key in _INTS and value.strip().isdigit():
        return value.strip()
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(path: str) -> str:
    """sesame's TOML for an access.conf (validated first: a bad file is refused)."""
    text = read_keyed(path)
    stanzas = parse_access(text, path)
    out = [
        f"# sesame config converted from {path} by `sesame import fwknop`.",
        "# Keys are access.conf's, in lower case. Keep this file mode 600: it holds keys.",
        "",
        "[server]",
        '# state_dir = "/var/lib/sesame"   # the replay window of SPA datagrams',
    ]
    index = -1
    for _, key, value in _lines(text):
        if key == "SOURCE":
            index += 1
            stanza = stanzas[index]
            out += ["", "[[fwknop]]", f'name = "{stanza.name}"', f"spa_port = {FWKNOP_PORT}"]
            if not stanza.allow_source_any:
                out.append(
                    '# "-s" (0.0.0.0) is refused: sesame wants the address inside to be the'
                    " datagram's source. require_source_address = false allows it."
                )
            out.append(
                "# The address inside must be the source; sesame_allow_other_address = true"
                ' lets NAT users ask for another one ("-a").'
            )
        out.append(f"{key.lower()} = {_toml_value(key, value)}")
    return "\n".join(out) + "\n"
