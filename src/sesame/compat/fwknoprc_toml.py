"""``sesame import fwknop ~/.fwknoprc``: an rc file as the client config's
``[[fwknop]]`` tables, each stanza with [default]'s settings in, checked first."""

from __future__ import annotations

from sesame.compat.fwknop import read_keyed
from sesame.compat.fwknoprc import NO_EFFECT, is_yes, options, read, stanza
from sesame.doors import NAME_RE
from sesame.errors import ConfigError


def is_rc(text: str) -> bool:
    """Is this a ~/.fwknoprc (its first setting is a ``[stanza]``), not an access.conf?"""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and stripped[0] not in "#;":
            return stripped.startswith("[")
    return False


_FLAGS = {
    "USE_HMAC",
    "RAND_PORT",
    "SERVER_RESOLVE_IPV4",
    "USE_GPG",
    "RESOLVE_IP_HTTP",
    "RESOLVE_IP_HTTPS",
}


def _toml(key: str, value: str) -> str:
    if key in _FLAGS:
        return "true" if is_yes(value) else "false"
    if value.lstrip("-").isdigit() and key != "KEY" and key != "HMAC_KEY":
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(path: str) -> str:
    """The client config's ``[[fwknop]]`` tables for the stanzas of a .fwknoprc, each
    with [default]'s settings in (checked first: a stanza sesame would refuse is)."""
    stanzas = read(read_keyed(path), path)
    out = [
        f"# sesame client config converted from {path} by `sesame import fwknop`:",
        "# add it to ~/.config/sesame/client.toml (mode 600: it holds keys), then",
        "#   sesame knock --fwknop NAME",
    ]
    names = [n for n in stanzas if n != "default"] or ["default"]
    for name in names:
        if not NAME_RE.match(name):
            raise ConfigError(
                path,
                0,
                f"[{name}]: a name in sesame is letters, digits, '.', '_'"
                " or '-', 32 at most: rename the stanza",
            )
        got = options(stanzas, path, name)
        stanza(got, name, got.values.get("SPA_SERVER") or "server-from-D")
        out += ["", "[[fwknop]]", f'name = "{name}"']
        for key in sorted(got.values, key=lambda k: got.lines[k]):
            if key in NO_EFFECT:
                out.append(f"# {key.lower()}: left out, no effect in sesame")
            else:
                out.append(f"{key.lower()} = {_toml(key, got.values[key])}")
    return "\n".join(out) + "\n"
