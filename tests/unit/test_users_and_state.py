"""Users in the server config, the client config, key files, the replay store,
one address per user."""

from __future__ import annotations

import os
from ipaddress import ip_address

import pytest

from sesame import clientconfig, config
from sesame.basics import Port
from sesame.doors import Door
from sesame.engine import Closed, Engine, Opened
from sesame.errors import ConfigError
from sesame.state import ReplayStore
from tests.helpers.configs import KEY, SERVER


def test_the_spa_example_loads():
    cfg = config.parse(SERVER)
    [user] = cfg.users
    assert user.name == "alice" and user.doors == ("ssh",) and len(user.key) == 32
    assert cfg.doors[0].spa_port == 62201
    assert cfg.needs_state and cfg.spa_ports == (62201,)
    assert KEY not in repr(user)  # keys never in reprs (and so not in logs)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (SERVER.replace('doors = ["ssh"]', 'doors = ["web"]'), 7, "no door is named 'web'"),
        (SERVER.replace(KEY, "c2hvcnQ="), 6, "key must be 32 bytes"),
        (SERVER.replace(KEY, "not base64!"), 6, "not valid base64"),
        (SERVER.replace('doors = ["ssh"]', "doors = []"), 11, "no [[user]] may open door"),
        (SERVER.replace('open = ["22/tcp"]', 'open = ["62201/udp"]'), 11, "also guarded"),
        (
            SERVER.replace('name = "alice"', 'name = "alice"\nallow_other = true'),
            6,
            "unknown key 'allow_other'",
        ),
        (SERVER.replace("spa_port = 62201", 'sequence_from = "totp"'), 11, "needs port_range"),
        (
            SERVER.replace("spa_port = 62201", 'sequence_from = "totp"\nport_range = [1, 1000]'),
            12,
            "port_range includes 22/tcp",
        ),
    ],
)
def test_bad_user_configs(text, line, reason):
    with pytest.raises(ConfigError) as caught:
        config.parse(text, "s.toml")
    assert str(caught.value).startswith(f"s.toml:{line}: "), str(caught.value)
    assert reason in caught.value.reason


def test_key_file_modes(tmp_path):
    key_file = tmp_path / "alice"
    key_file.write_text(KEY + "\n")
    text = SERVER.replace(f'key = "{KEY}"', f'key_file = "{key_file}"')
    for mode in (0o644, 0o660):  # others may read it; its group may write it
        key_file.chmod(mode)
        with pytest.raises(
            ConfigError, match=rf"s.toml:6: .* is open to others \(mode {mode:04o}\)"
        ):
            config.parse(text, "s.toml")
    for mode in (0o600, 0o640):  # root:sesame 0640, as the daemon runs in group sesame
        key_file.chmod(mode)
        assert config.parse(text).users[0].key == bytes(range(32))


CLIENT = f"""\
[[server]]
name = "home"
host = "203.0.113.5"
user = "alice"
key = "{KEY}"
spa_port = 62201

[server.doors.phone]
port_range = [40000, 40999]
"""


def test_client_config(tmp_path):
    path = tmp_path / "client.toml"
    path.write_text(CLIENT)
    path.chmod(0o600)
    home = clientconfig.load(str(path))["home"]
    assert (home.host, home.user, home.spa_port) == ("203.0.113.5", "alice", 62201)
    assert home.doors["phone"].port_range == (40000, 40999)
    assert home.doors["phone"].sequence_length == 4
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        clientconfig.load(str(path))
    path.chmod(0o600)
    path.write_text(CLIENT.replace("spa_port", "spa_prot"))
    with pytest.raises(ConfigError, match=r":6: unknown key 'spa_prot'"):
        clientconfig.load(str(path))


def test_replay_store_round_trip_and_compaction(tmp_path):
    store = ReplayStore(str(tmp_path / "state"))
    assert store.load(100.0) == []
    store.append(b"k" * 12, 150.0)
    store.append(b"old", 90.0)
    store.append(b"x" * 16, 200.0)
    store.close()
    again = ReplayStore(str(tmp_path / "state"))
    assert again.load(100.0) == [(b"k" * 12, 150.0), (b"x" * 16, 200.0)]
    assert os.path.getsize(again.path) == 2 * 41  # compacted: the old one is gone
    assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"
    again.close()


def test_one_address_per_user_replaces_the_old_grant():
    door = Door(name="ssh", spa_port=1, open=(Port("tcp", 22),), one_address_per_user=True)
    e = Engine([door])
    a, b = ip_address("198.51.100.2"), ip_address("198.51.100.3")
    e.open(door, a, 0.0, "alice")
    actions = e.open(door, b, 1.0, "alice")
    assert [(type(x), x.grant.address) for x in actions] == [(Closed, a), (Opened, b)]
    assert actions[0].reason == "replaced"
    assert [g.address for g in e.grants.all()] == [b]
    e.open(door, a, 2.0, "bob")  # another user's grant is left alone
    assert len(e.grants) == 2


def test_a_batch_of_keys_goes_on_record_in_one_write(tmp_path, monkeypatch):
    """What one batch of packets spent is written at once: one write for all, so a
    flood of valid SPA costs one system call a batch, and all of it or none is kept."""
    store = ReplayStore(str(tmp_path / "state"))
    store.load(100.0)
    writes = []
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real(fd, data))
    keys = [(bytes([i]) * 12, 150.0 + i) for i in range(20)]
    assert store.append_all(keys)
    assert len(writes) == 1
    monkeypatch.undo()
    store.close()
    assert ReplayStore(str(tmp_path / "state")).load(100.0) == keys
