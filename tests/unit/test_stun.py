"""STUN (RFC 5389) as far as a client behind NAT needs it; coturn answers for real in
the kernel tests."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame import client, clientconfig
from sesame.errors import ConfigError
from sesame.wire import stun

TX = bytes(range(12))


def answer(attributes: bytes, tx: bytes = TX, kind: int = stun.BINDING_SUCCESS) -> bytes:
    return struct.pack("!HHI12s", kind, len(attributes), stun.MAGIC_COOKIE, tx) + attributes


def xor_mapped(address: str, port: int) -> bytes:
    packed = ip_address(address).packed
    mask = stun.MAGIC_COOKIE.to_bytes(4, "big") + TX
    family = 1 if len(packed) == 4 else 2
    value = bytes([0, family]) + struct.pack("!H", port ^ 0x2112)
    value += bytes(a ^ b for a, b in zip(packed, mask, strict=False))
    return struct.pack("!HH", stun.XOR_MAPPED_ADDRESS, len(value)) + value


def test_a_request_is_a_bare_header():
    assert stun.request(TX) == bytes.fromhex("000100002112a442") + TX


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::7"])
def test_the_xor_mapped_address_is_read_behind_other_attributes(address):
    software = struct.pack("!HH", 0x8022, 5) + b"coturn"[:5] + b"\0\0\0"
    data = answer(software + xor_mapped(address, 40000))
    assert stun.mapped_address(data, TX) == ip_address(address)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        answer(xor_mapped("203.0.113.7", 1), tx=bytes(12)),  # another transaction
        answer(xor_mapped("203.0.113.7", 1), kind=0x0111),  # an error answer
        answer(b""),  # no address
        answer(xor_mapped("203.0.113.7", 1))[:-2],  # cut short
    ],
    ids=["empty", "other-transaction", "error", "no-address", "short"],
)
def test_anything_else_is_refused(data):
    with pytest.raises(ValueError):
        stun.mapped_address(data, TX)


@given(st.binary(max_size=120))
def test_arbitrary_answers_raise_only_value_errors(tail):
    for data in (tail, answer(tail)):
        with contextlib.suppress(ValueError):
            stun.mapped_address(data, TX)


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("stun.example.org", ("stun.example.org", 3478)),
        ("stun.example.org:19302", ("stun.example.org", 19302)),
        ("[2001:db8::1]:3479", ("2001:db8::1", 3479)),
        ("2001:db8::1", ("2001:db8::1", 3478)),
    ],
)
def test_stun_targets(target, parsed):
    assert stun.target(f"stun:{target}") == parsed


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("10.9.0.2", True),
        ("192.168.1.5", True),
        ("100.64.3.4", True),
        ("fd00::5", True),
        ("198.51.100.2", False),
        ("203.0.113.9", False),
        ("2001:db8::2", False),
    ],
)
def test_private_addresses(address, private):
    assert client.is_private(ip_address(address)) is private


def test_public_address_in_the_client_config(tmp_path):
    base = '[[server]]\nname = "home"\nhost = "192.0.2.1"\nuser = "alice"\nkey = "{}"\n'.format(
        "A" * 43 + "="
    )
    path = tmp_path / "client.toml"
    cases = [
        ('"stun:stun.example.org"', True),
        ('"203.0.113.7"', True),
        ('"nonsense here"', False),
        ('"fe80::1%eth0"', False),
    ]
    for value, ok in cases:
        path.write_text(base + f"public_address = {value}\n")
        path.chmod(0o600)
        if ok:
            assert clientconfig.load(str(path))["home"].public_address == value.strip('"')
        else:
            with pytest.raises(ConfigError, match=":6: public_address must be"):
                clientconfig.load(str(path))
