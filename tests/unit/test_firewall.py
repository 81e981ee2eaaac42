"""The rendered nft commands and the kernel's answers, without the kernel."""

from __future__ import annotations

from ipaddress import ip_address

from sesame import config
from sesame.doors import Door
from sesame.engine import Closed, Grant, Opened
from sesame.firewall import commands, ruleset
from sesame.ports import Port
from tests.unit.test_config import EXAMPLE

A = ip_address("198.51.100.2")
GRANT = Grant("ssh", A, (Port("tcp", 22),), 30.0)


def test_install_renders_sets_and_chains():
    text = ruleset.install(config.parse(EXAMPLE))
    assert "add element inet sesame guarded { tcp . 22 }" in text
    assert (
        "add element inet sesame knock { tcp . 7000, tcp . 8000, tcp . 9000, udp . 9000 }" in text
    )
    assert "log group 5155" in text
    assert "update @noisy4 { ip saddr timeout 60s }" in text
    assert "flush set inet sesame grants4" not in text  # live grants survive a reinstall


def test_interface_filter():
    text = ruleset.install(config.parse(EXAMPLE.replace("# interface", "interface")))
    assert 'knock iifname != "eth0" counter drop' in text


def test_opened_grant_replaces_any_same_element_in_one_transaction():
    text = ruleset.decisions("sesame", [Opened(GRANT)], now=0.0)
    assert text.splitlines() == [
        "add element inet sesame grants4 { 198.51.100.2 . tcp . 22 }",
        "delete element inet sesame grants4 { 198.51.100.2 . tcp . 22 }",
        'add element inet sesame grants4 { 198.51.100.2 . tcp . 22 timeout 30000ms comment "ssh" }',
    ]


def test_closing_is_idempotent_and_v6_goes_to_grants6():
    grant = Grant("ssh", ip_address("2001:db8::2"), (Port("tcp", 22),), 1.0)
    text = ruleset.decisions("sesame", [Closed(grant, "unknock")], now=0.0)
    assert text.splitlines() == [
        "add element inet sesame grants6 { 2001:db8::2 . tcp . 22 }",
        "delete element inet sesame grants6 { 2001:db8::2 . tcp . 22 }",
    ]


def test_parse_kernel_grants():
    listed = [
        {"metainfo": {}},
        {
            "set": {
                "name": "grants4",
                "elem": [
                    {
                        "elem": {
                            "val": {"concat": ["198.51.100.2", "tcp", 22]},
                            "timeout": 30,
                            "expires": 12,
                            "comment": "ssh",
                        }
                    },
                    {
                        "elem": {
                            "val": {"concat": ["198.51.100.2", 17, 53]},
                            "expires": 3,
                            "comment": "ssh",
                        }
                    },
                ],
            }
        },
    ]
    entries = ruleset.parse_grants(listed)
    assert [(str(e.address), str(e.port), e.door, e.left) for e in entries] == [
        ("198.51.100.2", "22/tcp", "ssh", 12.0),
        ("198.51.100.2", "53/udp", "ssh", 3.0),
    ]
    [grant] = ruleset.to_grants(entries, now=100.0)
    assert grant.ports == (Port("tcp", 22), Port("udp", 53))
    assert grant.expires == 103.0  # the earliest expiry of its elements


def test_commands_substitute_values_as_single_arguments():
    door = Door(
        name="ssh",
        sequence=(Port("tcp", 1),),
        open=(Port("tcp", 22), Port("udp", 60001)),
        start_command=(
            "/usr/sbin/iptables",
            "-s",
            "{ip}",
            "--dport",
            "{port}",
            "-p",
            "{proto}",
            "-m",
            "comment",
            "--comment",
            "sesame {door}",
        ),
        stop_command=("/bin/true",),
    )
    grant = Grant("ssh", A, door.open, 1.0)
    assert commands.plan(Opened(grant), door) == [
        [
            "/usr/sbin/iptables",
            "-s",
            "198.51.100.2",
            "--dport",
            "22",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            "sesame ssh",
        ],
        [
            "/usr/sbin/iptables",
            "-s",
            "198.51.100.2",
            "--dport",
            "60001",
            "-p",
            "udp",
            "-m",
            "comment",
            "--comment",
            "sesame ssh",
        ],
    ]
    assert commands.plan(Closed(grant, "expired"), door) == [["/bin/true"], ["/bin/true"]]


def test_substitution_does_not_reinterpret_values():
    assert commands.substitute(("/bin/echo", "{ip}{door}"), {"ip": "{door}", "door": "x"}) == [
        "/bin/echo",
        "{door}x",
    ]


def test_knocks_chain_modes():
    conf = config.parse(EXAMPLE)
    every = ruleset.knocks(conf, None)
    assert every[-1] == "add rule inet sesame knocks counter log group 5155 snaplen 2048 drop"
    kernel = "\n".join(ruleset.knocks(conf, [Port("tcp", 7000)]))
    assert "add element inet sesame first { tcp . 7000 }" in kernel
    remember = "update @hits4 { ip saddr timeout 5000ms : meta l4proto . th dport }"
    assert f"knocks meta l4proto . th dport @first {remember} counter drop" in kernel
    assert "knocks ip saddr @hits4 counter log group 5155" in kernel
    assert "knocks ip saddr @follow4 counter log group 5155" in kernel
    assert "knocks ip6 saddr @follow6 meta l4proto . th dport @first update @follow6" in kernel
    assert 'log prefix "full" group 5155' in kernel
    assert kernel.splitlines()[-1] == "add rule inet sesame knocks counter drop"


def test_first_knock_answer_from_the_kernel():
    from sesame.firewall import hits

    address = ip_address("198.51.100.2")
    asked = hits.request("sesame", address, 7)
    assert bytes(address.packed) in asked and b"hits4\0" in asked
    a = hits._attr
    element = (
        a(hits.ELEM_KEY, a(hits.DATA_VALUE, address.packed), True)
        + a(hits.ELEM_DATA, a(hits.DATA_VALUE, bytes([6, 0, 0, 0, 0x1B, 0x58, 0, 0])), True)
        + a(hits.ELEM_TIMEOUT, (5000).to_bytes(8, "big"))
        + a(hits.ELEM_EXPIRATION, (3800).to_bytes(8, "big"))
    )
    answer = bytes(4) + a(hits.LIST_ELEMENTS, a(hits.LIST_ELEM, element, True), True)
    assert hits.parse(answer) == (Port("tcp", 7000), 1.2)
    taken = answer.replace(bytes([0x1B, 0x58]), bytes(2))
    assert hits.parse(taken) == (None, 1.2)
    assert hits.parse(bytes(4)) is None
