"""Config validation: the issue's example works; every fault names file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sesame import config
from sesame.basics import Port
from sesame.errors import ConfigError
from tests.helpers.configs import EXAMPLE, SECOND_DOOR


def test_the_documented_example_loads():
    cfg = config.parse(EXAMPLE, "ex.toml")
    [door] = cfg.doors
    assert door.name == "ssh"
    assert door.sequence == (Port("tcp", 7000), Port("tcp", 8000), Port("udp", 9000))
    assert door.open == (Port("tcp", 22),)
    assert (door.seq_timeout, door.open_for) == (5.0, 30)
    assert door.close_sequence[0] == Port("tcp", 9000)
    assert cfg.guarded == (Port("tcp", 22),)
    assert cfg.server.interface is None


def test_the_shipped_example_file_loads_once_private(tmp_path):
    """It holds an example key: installed as README says (chmod 640), it loads."""
    installed = tmp_path / "sesame.toml"
    installed.write_text(Path("examples/sesame.toml").read_text())
    installed.chmod(0o640)
    cfg = config.load(str(installed))
    assert len(cfg.doors) >= 2


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (EXAMPLE.replace("open_for = 30", "open_fro = 30"), 9, "unknown key 'open_fro'"),
        (EXAMPLE.replace('"8000/tcp", "9000/udp"]', '"80000/tcp", "9000/udp"]'), 6, "out of range"),
        (EXAMPLE.replace('["22/tcp"]', '["22/sctp"]'), 8, "unknown protocol"),
        (
            EXAMPLE.replace('sequence = ["7000/tcp", "8000/tcp", "9000/udp"]', "sequence = []"),
            6,
            "sequence is empty",
        ),
        (EXAMPLE.replace('open = ["22/tcp"]', ""), 4, "missing 'open'"),
        (EXAMPLE.replace("open_for = 30", "open_for = 0"), 9, "open_for must be"),
        (EXAMPLE.replace("seq_timeout = 5", 'seq_timeout = "5"'), 7, "seq_timeout must"),
        (
            EXAMPLE + SECOND_DOOR.replace('["5000/udp"]', '["7000/tcp", "8000/tcp"]'),
            14,
            "ambiguous with door 'ssh'",
        ),
        (EXAMPLE + SECOND_DOOR.replace('"web"', '"ssh"'), 13, "used twice"),
        (
            EXAMPLE + SECOND_DOOR.replace('["443/tcp"]', '["8000/tcp"]'),
            15,
            "both opened and a knock port",
        ),
        (EXAMPLE.replace("[server]", "[server]\nbogus = 1"), 2, "unknown key 'bogus'"),
        (EXAMPLE.replace("[server]", "[sever]"), 1, "unknown table [sever]"),
        (EXAMPLE.replace("open_for = 30", "open_for = = 30"), 9, "Invalid value"),
        ("[server]\n", 1, "no [[door]]"),
        (EXAMPLE.replace('name = "ssh"', 'name = "s s"'), 5, "door name"),
        (EXAMPLE.replace("open_for = 30", 'start_command = "logger {ip}"'), 9, "runs no shell"),
        (
            EXAMPLE.replace("open_for = 30", 'start_command = ["/bin/echo", "{nope}"]'),
            9,
            "unknown placeholder {nope}",
        ),
        (EXAMPLE.replace("open_for = 30", 'start_command = ["echo"]'), 9, "absolute path"),
        (EXAMPLE.replace("[server]", '[server]\npublic = ["22/tcp"]'), 9, "public"),
        (EXAMPLE.replace("[server]", '[server]\ninterface = "eth0; rm"'), 2, "interface"),
    ],
)
def test_bad_configs_name_file_line_and_reason(text, line, reason):
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "bad.toml")
    err = caught.value
    assert str(err).startswith(f"bad.toml:{line}: "), str(err)
    assert reason in err.reason


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "missing.toml"))


def test_scanner_hold_covers_the_longest_attempt():
    cfg = config.parse(EXAMPLE.replace("seq_timeout = 5", "seq_timeout = 90"))
    assert cfg.hold == 90
    assert config.parse(EXAMPLE).hold == 60


def test_knockd_port_forms_are_accepted():
    cfg = config.parse(EXAMPLE.replace('"9000/udp"', '"9000:udp"').replace('"8000/tcp"', "8000"))
    assert cfg.doors[0].sequence[1:] == (Port("tcp", 8000), Port("udp", 9000))


def test_every_key_of_a_table_is_a_field_of_its_object_with_one_converter():
    """Known keys come from the value objects' fields: a new field is a new key, and
    the loader must know how to read it from TOML."""
    from sesame.config import DOOR, INTERNAL, SERVER, USER, known
    from sesame.doors import Door, User
    from sesame.settings import Server

    assert set(SERVER) == known(Server)
    assert set(DOOR) == known(Door)
    assert set(USER) == known(User)
    assert {"knockd_mode", "key"} == INTERNAL


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("max_sources", "0", "max_sources must be a whole number from 1 to 262144"),
        ("spa_window", "true", "spa_window must be a whole number"),
        ("spa_rate", "0.0", "spa_rate must be a number of datagrams a second"),
        ("state_dir", '"var/lib"', "state_dir must be an absolute path"),
        ("table", '"a.b"', "table must be a name"),
    ],
)
def test_a_server_value_is_refused_by_its_own_rule_at_its_line(key, value, reason):
    text = EXAMPLE.replace("[server]", f"[server]\n{key} = {value}")
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "bad.toml")
    assert str(caught.value).startswith("bad.toml:2: "), str(caught.value)
    assert reason in caught.value.reason


GATEWAY = """\
[[door]]
name = "inside"
sequence = ["7000/tcp"]
open = ["22/tcp", "10.0.5.20:22/tcp", "[fd00:5::20]:2222/udp"]
dnat = [{ port = "2222/tcp", to = "10.0.5.20:22" }]
masquerade = true
"""


def test_a_gateways_door():
    loaded = config.parse(GATEWAY)
    [door] = loaded.doors
    assert [str(p) for p in door.open] == [
        "22/tcp",
        "10.0.5.20:22/tcp",
        "[fd00:5::20]:2222/udp",
        "2222/tcp",
        "2222/tcp->10.0.5.20:22",  # the rewrite, for the knocker alone
    ]
    assert [str(p) for p in loaded.guarded] == ["22/tcp", "2222/tcp"]
    assert [str(p) for p in loaded.forwarded] == [
        "10.0.5.20:22/tcp",
        "[fd00:5::20]:2222/udp",
    ]
    assert loaded.masqueraded == loaded.forwarded
    assert [(str(a), str(b)) for a, b in loaded.dnats] == [("2222/tcp", "10.0.5.20:22/tcp")]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (('"10.0.5.20:22/tcp"', '"10.0.5.300:22/tcp"'), "not an address in '10.0.5.300:22/tcp'"),
        (('to = "10.0.5.20:22"', 'to = "22"'), "dnat entries are { port"),
        (('{ port = "2222/tcp", to', '{ port = "2222/tcp", where'), "dnat must be a list like"),
        (("masquerade = true", "masquerade = true\ngate = false"), "must gate"),
    ],
)
def test_gateway_refusals(change, reason):
    with pytest.raises(ConfigError, match=re.escape(reason)):
        config.parse(GATEWAY.replace(*change))


def test_one_port_rewritten_two_ways_is_refused():
    twice = GATEWAY + GATEWAY.replace('"inside"', '"other"').replace(
        '"10.0.5.20:22" }', '"10.0.5.21:22" }'
    ).replace('open = ["22/tcp", ', "open = [").replace('"7000/tcp"]\nopen', '"7100/tcp"]\nopen')
    with pytest.raises(
        ConfigError, match=re.escape("2222/tcp is rewritten to 10.0.5.20:22/tcp by door")
    ):
        config.parse(twice)
