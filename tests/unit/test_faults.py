"""What a key holder, a local user or a full disk can do to the daemon, without root:
each user's share of the replay window, the state directory and its files, records
read back from disk, a disk that fills up."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import struct
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesame import config
from sesame.basics import Port
from sesame.crypto import encode_key
from sesame.daemon import Daemon
from sesame.doors import Door, User
from sesame.engine import Engine
from sesame.errors import RemoteError
from sesame.files import FileRefused
from sesame.state import RECORD, ReplayStore
from sesame.testing import FakeClock, MemoryGate, recorded
from sesame.wire import spa
from sesame.wire.nflog import Logged
from tests.helpers.packets import ipv4, udp

WALL = 1_800_000_000.0
SSH = Door(name="ssh", spa_port=62201, open=(Port("tcp", 22),))
PORT = Port("udp", 62201)
KEYS = {"alice": bytes(range(32)), "bob": bytes(range(1, 33))}


def datagram(user: str, address: str, stamp: float = WALL) -> bytes:
    aead = spa.cipher(KEYS[user])
    return spa.encode(user, aead, "ssh", ip_address(address), int(stamp), os.urandom(12))


class TestShares:
    def engine(self, **limits):
        users = [User(name, key, ("ssh",)) for name, key in KEYS.items()]
        return Engine([SSH], users, **limits)

    def test_a_flood_of_valid_datagrams_from_one_user_does_not_lock_out_another(self):
        """alice stamps datagrams a window ahead as fast as she can: beyond her burst,
        they are refused before taking a place in the replay window; bob gets in."""
        e = self.engine(spa_rate=1.0, spa_burst=30)
        refused = 0
        for i in range(2_000):
            source = f"198.51.{i >> 8 & 255}.{i & 255}"
            try:
                e.spa(
                    ip_address(source), PORT, datagram("alice", source, WALL + 59), 0.01 * i, WALL
                )
            except RemoteError as exc:
                assert exc.reason == "over the user's rate"
                refused += 1
        # 20 seconds of flood: the burst, then one a second.
        assert 2_000 - refused <= 30 + 21
        assert len(e.replay) == 2_000 - refused
        assert e.over_rate == {"alice"}
        actions = recorded(
            e,
            e.spa(ip_address("203.0.113.7"), PORT, datagram("bob", "203.0.113.7"), 20.0, WALL),
            20.0,
        )
        assert actions[-1].grant.user == "bob"

    def test_a_share_comes_back_with_time(self):
        e = self.engine(spa_rate=0.5, spa_burst=1)
        a = "198.51.100.2"
        e.spa(ip_address(a), PORT, datagram("alice", a), 0.0, WALL)
        with pytest.raises(RemoteError, match="rate"):
            e.spa(ip_address(a), PORT, datagram("alice", a), 1.0, WALL)
        e.spa(ip_address(a), PORT, datagram("alice", a), 3.1, WALL)

    def test_a_stranger_naming_a_user_does_not_spend_its_share(self):
        e = self.engine(spa_rate=0.01, spa_burst=1)
        a, b = "198.51.100.2", "203.0.113.66"
        forged = bytearray(datagram("alice", b))
        forged[-1] ^= 1
        for _ in range(100):  # refused: for their tag, then for their source's failures
            with pytest.raises(RemoteError, match=r"bad tag|too many failures"):
                e.spa(ip_address(b), PORT, bytes(forged), 0.0, WALL)
        e.spa(ip_address(a), PORT, datagram("alice", a), 0.0, WALL)

    def test_failures_forged_from_a_users_own_address_do_not_lock_it_out(self):
        """Once alice opened from an address, a stranger forging that address with
        her name is tried each time (and costs decryptions) rather than shutting her
        out of it."""
        e = self.engine()
        a = "198.51.100.2"
        e.spa(ip_address(a), PORT, datagram("alice", a), 0.0, WALL)
        forged = bytearray(datagram("alice", a))
        forged[-1] ^= 1
        for _ in range(100):
            with pytest.raises(RemoteError, match="bad tag"):
                e.spa(ip_address(a), PORT, bytes(forged), 1.0, WALL)
        e.spa(ip_address(a), PORT, datagram("alice", a), 1.0, WALL)


def records(store: ReplayStore) -> bytes:
    with open(store.path, "rb") as handle:
        return handle.read()


class TestStateDirectory:
    def test_open_to_others_is_refused_with_the_fix(self, tmp_path):
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        state.chmod(0o777)
        with pytest.raises(FileRefused, match=r"mode 0777.*chmod 700"):
            ReplayStore(str(state))

    def test_another_owner_is_refused(self, tmp_path):
        if os.geteuid() != 0:
            pytest.skip("changing a directory's owner needs root")
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        with pytest.raises(FileRefused, match=r"belongs to uid 65534.*chown 0"):
            ReplayStore(str(state))

    def test_a_symbolic_link_as_the_directory_is_refused(self, tmp_path):
        (tmp_path / "real").mkdir(mode=0o700)
        (tmp_path / "state").symlink_to(tmp_path / "real")
        with pytest.raises(FileRefused, match="symbolic link"):
            ReplayStore(str(tmp_path / "state"))

    def test_links_in_it_are_never_followed(self, tmp_path):
        """A link where the temporary file goes is removed, not written through; a
        link as the replay file itself is not read."""
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        (state / "replay.new").symlink_to(victim)
        (state / "replay").symlink_to(victim)
        store = ReplayStore(str(state))
        assert store.load(WALL) == []
        assert store.unreadable  # refused, not followed: keys may be lost
        assert victim.read_bytes() == b"precious"
        assert not (state / "replay").is_symlink()
        store.shut()

    def test_created_private(self, tmp_path):
        store = ReplayStore(str(tmp_path / "a" / "state"))
        assert os.stat(tmp_path / "a" / "state").st_mode & 0o777 == 0o700
        store.shut()


class TestRecordsReadBack:
    @pytest.mark.parametrize(
        "record",
        [
            RECORD.pack(1e300, 16, b"k" * 16),  # crashed the loop (epoll overflow)
            RECORD.pack(math.inf, 16, b"k" * 16),
            RECORD.pack(math.nan, 16, b"k" * 16),
            RECORD.pack(WALL + 100, 0, b""),
            RECORD.pack(WALL + 100, 200, b"k" * 32),
            RECORD.pack(WALL + 10_000, 16, b"k" * 16),  # further ahead than any key lives
        ],
        ids=["huge", "inf", "nan", "empty-key", "long-key", "too-far"],
    )
    def test_a_record_that_cannot_be_right_is_dropped_and_counted(self, tmp_path, record):
        store = ReplayStore(str(tmp_path / "state"), horizon=241)
        good = RECORD.pack(WALL + 100, 12, b"g" * 12)
        with open(store.path, "wb") as handle:
            handle.write(good + record + good[:7])
        assert store.load(WALL) == [(b"g" * 12, WALL + 100)]
        assert store.rejected == 2  # the record, and the torn tail
        assert store.damaged
        store.shut()

    def test_after_a_damaged_record_only_fresh_messages_open(self, tmp_path):
        """Keys may have been lost: a datagram stamped before the start could be a
        replay, so it is refused; one stamped after opens."""
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        (state / "replay").write_bytes(b"garbage")
        clock = FakeClock()
        gate = MemoryGate(clock)
        cfg = config.parse(SERVER.format(state=state))
        daemon = Daemon(cfg, gate, clock, lambda: WALL)
        daemon.start()
        a = "198.51.100.2"
        for stamp in (WALL - 1, WALL):
            payload = datagram("alice", a, stamp)
            packet = Logged(5155, b"", ipv4(a, "198.51.100.1", 17, udp(62201, payload)))
            daemon.packet(packet, clock())
        assert daemon.drops == {"stamped before the replay record was lost": 1}
        assert gate.allows(ip_address(a), Port("tcp", 22), clock())
        daemon.close()

    @settings(max_examples=50, deadline=None)
    @given(st.binary(max_size=400))
    def test_any_bytes_load_without_raising(self, tmp_path_factory, data):
        store = ReplayStore(str(tmp_path_factory.mktemp("s") / "state"), horizon=241)
        with open(store.path, "wb") as handle:
            handle.write(data)
        for key, until in store.load(WALL):
            assert 0 < len(key) <= 32 and WALL <= until <= WALL + 241
        store.shut()

    def test_a_huge_expiry_never_reaches_the_loop(self, tmp_path):
        """Whatever the replay window holds, the loop's wait stays bounded."""
        clock = FakeClock()
        daemon = Daemon(
            config.parse(SERVER.format(state=tmp_path / "state")),
            MemoryGate(clock),
            clock,
            lambda: WALL,
        )
        daemon.engine.replay.add(b"x" * 16, 1e300)
        assert daemon.timeout(clock()) <= 60.0


@contextlib.contextmanager
def disk_full_after(size: int):
    """Writes beyond ``size`` bytes fail as on a full disk (RLIMIT_FSIZE: EFBIG)."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


SERVER = f"""\
[server]
state_dir = "{{state}}"

[[user]]
name = "alice"
key = "{encode_key(KEYS["alice"])}"
doors = ["ssh"]

[[door]]
name = "ssh"
spa_port = 62201
open = ["22/tcp"]
"""


class TestDiskFull:
    def test_a_write_that_does_not_fit_leaves_no_torn_record(self, tmp_path):
        store = ReplayStore(str(tmp_path / "state"))
        store.load(WALL)
        assert store.append(b"a" * 16, WALL + 10)
        with disk_full_after(RECORD.size + 20):
            assert not store.append(b"b" * 16, WALL + 10)
            assert store.error
        assert records(store) == RECORD.pack(WALL + 10, 16, b"a" * 16)
        assert store.append(b"c" * 16, WALL + 10)  # space is back
        assert store.error is None
        assert len(records(store)) == 2 * RECORD.size
        store.shut()

    def test_spa_opens_nothing_while_the_state_cannot_be_written_and_recovers(self, tmp_path):
        clock = FakeClock()
        gate = MemoryGate(clock)
        daemon = Daemon(
            config.parse(SERVER.format(state=tmp_path / "state")), gate, clock, lambda: WALL
        )
        daemon.start()
        a = "198.51.100.2"

        def send():
            payload = datagram("alice", a)
            daemon.packet(
                Logged(5155, b"", ipv4(a, "198.51.100.1", 17, udp(62201, payload))), clock()
            )

        with disk_full_after(os.path.getsize(daemon.record.store.path)):
            send()
        assert gate.elements == {}
        assert daemon.reports["not recorded"] == 1
        send()
        assert gate.allows(ip_address(a), Port("tcp", 22), clock())
        daemon.close()


def test_the_record_layout_is_fixed():
    assert RECORD.size == struct.calcsize(">dB32s") == 41


B64_TEXT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=600
)


class TestDecodersUnderHostileInput:
    """Whatever arrives, the one outcome besides a grant is a RemoteError, and no
    hostile input grants."""

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.binary(max_size=700), B64_TEXT.map(str.encode)))
    def test_fwknop_datagrams(self, data):
        from tests.unit.test_compat import SERVER as FW_SERVER
        from tests.unit.test_compat import SPA as FW_PORT
        from tests.unit.test_compat import USER as FW_USER
        from tests.unit.test_compat import fw_engine

        e = fw_engine()
        with contextlib.suppress(RemoteError):
            e.fwknop(FW_USER, FW_SERVER, FW_PORT, data, 0.0, WALL)
        assert len(e.grants) == 0

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=16), st.binary(max_size=300))
    def test_logged_packets_with_any_prefix(self, tmp_path_factory, prefix, payload):
        clock = FakeClock()
        gate = MemoryGate(clock)
        state = tmp_path_factory.mktemp("s") / "state"
        daemon = Daemon(config.parse(SERVER.format(state=state)), gate, clock)
        daemon.packet(Logged(5155, prefix, payload), clock())
        packet = ipv4("198.51.100.2", "198.51.100.1", 17, udp(62201, payload))
        daemon.packet(Logged(5155, prefix, packet), clock())
        assert gate.elements == {}
        daemon.close()
