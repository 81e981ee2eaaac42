"""The peers' files and formats, without the kernel: knockd.conf, access.conf,
.fwknoprc, fwknop datagrams (vectors made by Debian's fwknop 2.6.10)."""

from __future__ import annotations

import base64
import time
from ipaddress import ip_address, ip_network

import pytest
from cryptography.hazmat.primitives import padding
from hypothesis import given
from hypothesis import strategies as st

from sesame import config
from sesame.basics import Port
from sesame.compat import fwknop, knockd
from sesame.doors import FwknopStanza
from sesame.engine import Engine, Knock, Opened, Spent
from sesame.errors import ConfigError, RemoteError
from sesame.firewall import commands
from sesame.testing import recorded
from sesame.wire import fwknop as wire

KEY = base64.b64decode("JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20=")
HMAC = base64.b64decode(
    "NbsbbnGqb8yPXhLGdrC7PjwpLHB4X8rm8nRG5vQnWOGuHpIs1vYJ0mrXXBYx7AzuFAo1lBOxjapUZ+43xLH9SA=="
)
# Made by `fwknop -A tcp/22 -a 198.51.100.2 -T -v` (Debian 2.6.10) with the keys above.
VECTOR = (
    b"/0aKsTk+t4/e/8Y+EtRr+RpdgSB0RWEjOokVPXfMBHDK+gf5fFhuILQQcyqIfpSRfFaBW9XOy2ve1aPcMb6COSXOm"
    b"5hmQbCq6trNvn8240fB0f++PY0/5EMg/lVhBl7WssLn2guSvrIjQ/9oSHUzerrupdI4S7utENkih/g0H8Zh97LHWJ"
    b"+IYABF6s/WpK0S7CyU0Sfjgw6aUVRIZlR2k+dfoeL1DjDK8"
)
STAMP = 1795567620
USER = ip_address("198.51.100.2")
SERVER = ip_address("198.51.100.1")
SPA = Port("udp", 62201)


class TestFwknopWire:
    def test_the_real_clients_datagram_decodes(self):
        message = wire.decode(VECTOR, KEY, HMAC)
        assert (message.user, message.timestamp, message.kind, message.access) == (
            "root",
            STAMP,
            1,
            "198.51.100.2,tcp/22",
        )
        assert message.rand == "2998031341952045" and message.version == "3.0.0"

    def test_every_flipped_byte_is_refused(self):
        for i in range(len(VECTOR)):
            data = bytearray(VECTOR)
            data[i] = ord("A") if data[i] != ord("A") else ord("B")
            with pytest.raises(RemoteError):
                wire.decode(bytes(data), KEY, HMAC)

    def test_a_wrong_hmac_key_is_refused_before_decryption(self):
        with pytest.raises(RemoteError, match="fwknop bad hmac"):
            wire.decode(VECTOR, KEY, b"x" * 64)

    @pytest.mark.parametrize("digest", ["md5", "sha1", "sha256", "sha384", "sha512"])
    def test_round_trip_with_each_hmac_digest(self, digest):
        data = wire.encode(
            "alice",
            "198.51.100.2,tcp/22",
            KEY,
            HMAC,
            timestamp=STAMP,
            client_timeout=45,
            hmac_type=digest,
        )
        message = wire.decode(data, KEY, HMAC, digest)
        assert (message.user, message.kind, message.client_timeout) == ("alice", 3, 45)

    def test_legacy_datagrams_without_hmac(self):
        data = wire.encode("alice", "198.51.100.2,tcp/22", KEY, None, timestamp=STAMP)
        assert wire.decode(data, KEY, None).user == "alice"

    @given(st.integers(1, 8).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n)))
    def test_padding_comes_off_as_the_library_takes_it_off(self, padded):
        unpadder = padding.PKCS7(128).unpadder()
        try:
            expected: bytes | None = unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            expected = None
        try:
            got: bytes | None = wire._unpad(padded)
        except ValueError:
            got = None
        assert got == expected


ACCESS = f"""\
# a comment
SOURCE              198.51.100.0/24, 2001:db8::/64
OPEN_PORTS          tcp/22, udp/1194
RESTRICT_PORTS      tcp/23
KEY_BASE64          JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20=
HMAC_KEY_BASE64     {base64.b64encode(HMAC).decode()}
HMAC_DIGEST_TYPE    sha256
FW_ACCESS_TIMEOUT   45
MAX_FW_TIMEOUT      90
ENCRYPTION_MODE     CBC
ACCESS_EXPIRE       12/31/2099

SOURCE              ANY
OPEN_PORTS          tcp/2222
KEY                 a plain passphrase
SESAME_LEGACY_NO_HMAC Y
ACCESS_EXPIRE_EPOCH 1000
"""


class TestAccessConf:
    def test_stanzas(self):
        first, second = fwknop.parse_access(ACCESS, "access.conf")
        assert first.sources[0] == ip_address("198.51.100.0") or first.sources
        assert [str(p) for p in first.open_ports] == ["22/tcp", "1194/udp"]
        assert [str(p) for p in first.restrict_ports] == ["23/tcp"]
        assert (first.fw_access_timeout, first.max_fw_timeout) == (45, 90)
        assert first.access_expire == time.mktime(time.strptime("12/31/2099", "%m/%d/%Y"))
        assert not first.allow_source_any and not first.allow_other_address
        assert second.key == b"a plain passphrase" and second.hmac_key is None
        assert second.sources == () and second.access_expire == 1000

    @pytest.mark.parametrize(
        ("extra", "line", "reason"),
        [
            ("GPG_DECRYPT_ID 1234", 18, "GnuPG mode is not supported"),
            ("ENABLE_CMD_EXEC Y", 18, "command execution by SPA is not supported"),
            ("FORWARD_ALL Y", 18, "FORWARD_ALL needs FORCE_NAT or SESAME_NAT_DESTINATIONS"),
            ("FORCE_NAT 10.0.0.1", 18, "FORCE_NAT: needs an address and a port, not '10.0.0.1'"),
            ("FORCE_MASQUERADE Y", 18, "FORCE_MASQUERADE needs FORCE_NAT"),
            (
                "FW_ACCESS_TIMEOUT 3 minutes",
                18,
                "must be a whole number of seconds, not '3 minutes'",
            ),
            ("KEY __CHANGEME__", 18, "KEY is still __CHANGEME__"),
            ("HMAC_KEY_BASE64 __changeme__", 18, "HMAC_KEY_BASE64 is still __CHANGEME__"),
            ("ENCRYPTION_MODE ECB", 18, "ENCRYPTION_MODE: ECB is refused"),
            ("ENCRYPTION_MODE ctr", 18, "CTR without an HMAC lets anyone on the path flip"),
            ("ENCRYPTION_MODE pcbc", 18, "PCBC is refused: fwknop does not offer it"),
            ("ENCRYPTION_MODE xts", 18, "'xts' is not a mode: CBC, CTR, CFB, OFB or legacy"),
            ("HMAC_DIGEST_TYPE whirlpool", 18, "HMAC_DIGEST_TYPE 'whirlpool'"),
        ],
    )
    def test_refusals_by_name_and_line(self, extra, line, reason):
        with pytest.raises(ConfigError) as caught:
            fwknop.parse_access(ACCESS + extra + "\n", "a.conf")
        assert str(caught.value).startswith(f"a.conf:{line}: ") and reason in str(caught.value)

    def test_files_are_read_as_fwknopd_reads_them(self, caplog):
        """A value ends at ";"; ";" starts a comment line as "#" does; tabs separate;
        a key may end with a colon; an unknown key is said and left out."""
        text = (
            "; fwknopd's own sample files comment this way\n"
            "SOURCE\tANY;\n"
            "OPEN_PORTS:   tcp/22;   ### the ssh port\n"
            "KEY_BASE64: JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20=;\n"
            f"HMAC_KEY_BASE64\t{base64.b64encode(HMAC).decode()};\n"
            "FW_ACCESS_TIMEOUT 3;\n"
            "ACCESS_EXPIRE 01/01/2099;   ### comment\n"
            "DIGEST_TYPE SHA256\n"
        )
        [stanza] = fwknop.parse_access(text, "a.conf")
        assert [str(p) for p in stanza.open_ports] == ["22/tcp"]
        assert stanza.key == base64.b64decode("JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20=")
        assert stanza.hmac_key == HMAC and stanza.fw_access_timeout == 3
        assert stanza.access_expire == time.mktime(time.strptime("01/01/2099", "%m/%d/%Y"))
        assert "a.conf:8: unknown access.conf key 'DIGEST_TYPE' is ignored" in caplog.text

    def test_a_date_that_is_not_one_is_refused_in_sesames_words(self):
        with pytest.raises(
            ConfigError, match=r"a.conf:11: ACCESS_EXPIRE: must be a date MM/DD/YYYY"
        ):
            fwknop.parse_access(ACCESS.replace("12/31/2099", "2099-12-31"), "a.conf")

    def test_an_hmac_key_that_is_the_encryption_key_is_refused(self):
        text = "SOURCE ANY\nOPEN_PORTS tcp/22\nKEY samesame\nHMAC_KEY samesame\n"
        with pytest.raises(ConfigError, match=r"a.conf:4: the HMAC key is the encryption key"):
            fwknop.parse_access(text, "a.conf")

    def test_no_hmac_key_is_refused_unless_legacy_is_allowed(self):
        text = ACCESS.replace("SESAME_LEGACY_NO_HMAC Y\n", "")
        with pytest.raises(ConfigError, match=r"a.conf:13: .*SESAME_LEGACY_NO_HMAC Y"):
            fwknop.parse_access(text, "a.conf")

    def test_open_ports_are_required(self):
        with pytest.raises(ConfigError, match=r"a.conf:13: OPEN_PORTS is required"):
            fwknop.parse_access(ACCESS.replace("OPEN_PORTS          tcp/2222\n", ""), "a.conf")


def fw_engine(**options):
    stanza = FwknopStanza(
        name="fw", key=KEY, hmac_key=HMAC, open_ports=(Port("tcp", 22),), **options
    )
    return Engine([], fwknop=[stanza])


def datagram(access="198.51.100.2,tcp/22", stamp=STAMP, timeout=0, user="alice"):
    return wire.encode(user, access, KEY, HMAC, timestamp=stamp, client_timeout=timeout)


class TestFwknopEngine:
    def test_a_stanza_that_denies_the_ports_passes_the_datagram_to_the_next(self):
        """fwknop's "dual usage access key": two stanzas with the same keys for other
        ports; a request the first denies is the second's."""
        ssh, web = (
            FwknopStanza(name=n, key=KEY, hmac_key=HMAC, open_ports=(Port("tcp", p),))
            for n, p in (("ssh", 22), ("web", 80))
        )
        e = Engine([], fwknop=[ssh, web])
        data = datagram("198.51.100.2,tcp/80")
        actions = recorded(e, e.fwknop(USER, SERVER, SPA, data, 0.0, STAMP), 0.0)
        assert isinstance(actions[1], Opened) and actions[1].grant.door == "web"
        with pytest.raises(RemoteError, match="fwknop port not allowed"):
            e.fwknop(USER, SERVER, SPA, datagram("198.51.100.2,tcp/443"), 0.0, STAMP)

    def test_accepted_and_replay_refused(self):
        e = fw_engine()
        data = datagram()
        actions = recorded(e, e.fwknop(USER, SERVER, SPA, data, 0.0, STAMP + 5), 0.0)
        assert isinstance(actions[0], Spent) and isinstance(actions[1], Opened)
        assert actions[1].grant.expires == 30.0 and actions[1].grant.user == "alice"
        with pytest.raises(RemoteError, match="replay"):
            e.fwknop(ip_address("198.51.100.3"), SERVER, SPA, data, 1.0, STAMP + 6)

    @pytest.mark.parametrize(
        ("options", "data", "source", "wall", "reason"),
        [
            ({}, datagram(), USER, STAMP + 121, "stale timestamp"),
            ({}, datagram(), USER, STAMP - 121, "stale timestamp"),
            ({}, datagram("198.51.100.9,tcp/22"), USER, STAMP, "address differs from source"),
            ({}, datagram("0.0.0.0,tcp/22"), USER, STAMP, "fwknop source address required"),
            ({}, datagram("198.51.100.2,tcp/23"), USER, STAMP, "fwknop port not allowed"),
            ({}, datagram("198.51.100.2,icmp/0"), USER, STAMP, "fwknop access request"),
            ({"require_username": "bob"}, datagram(), USER, STAMP, "fwknop username"),
            (  # a scope id: any bytes after "%", a newline to forge a log line included
                {"allow_other_address": True},
                datagram("2001:db8::9%\nforged,tcp/22"),
                USER,
                STAMP,
                "fwknop access request",
            ),
            ({"access_expire": STAMP - 1.0}, datagram(), USER, STAMP, "fwknop access expired"),
            (
                {"sources": (ip_address("203.0.113.0"),)},
                datagram(),
                USER,
                STAMP,
                "fwknop no stanza for source",
            ),
            ({}, b"A" * 100, USER, STAMP, "fwknop size or charset"),
            ({}, datagram() + b"\n", USER, STAMP, "fwknop size or charset"),  # (regex $)
            ({}, b"A" * 200, USER, STAMP, "fwknop bad hmac"),
        ],
    )
    def test_refusals(self, options, data, source, wall, reason):
        if "sources" in options:
            from ipaddress import ip_network

            options = {"sources": (ip_network("203.0.113.0/24"),)}
        e = fw_engine(**options)
        with pytest.raises(RemoteError) as caught:
            e.fwknop(source, SERVER, SPA, data, 0.0, wall)
        assert caught.value.reason == reason
        assert len(e.grants) == 0 and len(e.replay) == 0
        at_sight = reason in ("fwknop size or charset", "fwknop bad hmac") and not options
        assert e.refusal(SPA.number, data) == (reason if at_sight else None)

    def test_client_timeout_capped_and_source_any_where_allowed(self):
        e = fw_engine(allow_source_any=True, max_fw_timeout=60)
        [_, opened] = recorded(
            e, e.fwknop(USER, SERVER, SPA, datagram("0.0.0.0,tcp/22", timeout=500), 0.0, STAMP), 0.0
        )
        assert opened.grant.address == USER and opened.grant.expires == 60.0


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
B64_TEXT = st.text(B64, max_size=700)


@st.composite
def stanzas_and_datagram(draw):
    """One to three stanzas on the port, each with one of a few HMAC keys (or none) and
    digests; a datagram keyed right, wrongly, base64 text or any bytes. And whether a
    stanza's HMAC holds for it."""
    hmacs = st.sampled_from([HMAC, b"w" * 64, b"v" * 32, None])
    digests = st.sampled_from(["sha256", "sha512", "sha1"])
    stanzas = [
        FwknopStanza(
            name=f"s{n}",
            key=KEY,
            hmac_key=draw(hmacs),
            hmac_type=draw(digests),
            open_ports=(Port("tcp", 22),),
        )
        for n in range(draw(st.integers(1, 3)))
    ]
    kind, digest = draw(st.sampled_from(["right", "wrong", "text", "bytes"])), draw(digests)
    if kind in ("right", "wrong"):
        hmac = HMAC if kind == "right" else b"h" * 64
        access = "198.51.100.2,tcp/22"
        data = wire.encode("alice", access, KEY, hmac, timestamp=STAMP, hmac_type=digest)
    else:
        data = draw(B64_TEXT).encode() if kind == "text" else draw(st.binary(max_size=700))
    holds = kind == "right" and any(s.hmac_key == HMAC and s.hmac_type == digest for s in stanzas)
    return stanzas, data, holds


@given(stanzas_and_datagram())
def test_a_refusal_at_sight_is_the_refusal_judging_gives(case):
    """Engine.refusal (the daemon's first look at a flood) names a refusal only where
    judging the whole datagram refuses it for that reason; a datagram some stanza's
    HMAC holds is never refused at sight."""
    stanzas, data, holds = case
    e = Engine([], fwknop=stanzas)
    reason = e.refusal(SPA.number, data)
    if holds:
        assert reason is None
    if reason is not None:
        with pytest.raises(RemoteError) as caught:
            e.fwknop(USER, SERVER, SPA, data, 0.0, STAMP)
        assert caught.value.reason == reason
        assert len(e.grants) == 0 and len(e.replay) == 0


def test_no_refusal_at_sight_where_the_source_or_the_time_decides():
    restricted = fw_engine(sources=(ip_network("203.0.113.0/24"),))
    expiring = fw_engine(access_expire=STAMP + 3600.0)
    for e in (restricted, expiring):
        assert e.refusal(SPA.number, b"A" * 100) is None
    assert fw_engine().refusal(SPA.number, b"A" * 100) == "fwknop size or charset"
    assert fw_engine().refusal(62202, b"A" * 100) is None  # not a port of a stanza


KNOCKD = """\
[options]
    logfile = /var/log/knockd.log
    PidFile = /run/knockd.pid

[open SSH]
    SEQUENCE = 7000:udp, 8000 ,9000:tcp
    tcpflags = syn,!ack
    Command = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    cmd_timeout = 15
    stop_command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
    start_command_6 = echo %IP% | logger
"""


class TestKnockdConf:
    def test_a_door_and_options(self):
        config = knockd.from_text(KNOCKD, "knockd.conf")
        [door] = config.doors
        assert door.name == "open_SSH"
        assert [str(p) for p in door.sequence] == ["7000/udp", "8000/tcp", "9000/tcp"]
        assert door.tcp_flags == (0x02, 0x10) and door.open_for == 15
        assert door.seq_timeout == 25 and not door.gate and door.knockd_mode
        assert config.server.interface == "eth0"  # knockd's default
        assert (config.server.log_file, config.server.pid_file) == (
            "/var/log/knockd.log",
            "/run/knockd.pid",
        )
        assert knockd.from_text(KNOCKD, "k", interface="br0").server.interface == "br0"

    def test_commands_run_through_sh_with_the_address(self):
        [door] = knockd.from_text(KNOCKD, "knockd.conf").doors
        from sesame.engine import Grant

        v4 = Opened(Grant(door.name, USER, (), 15.0))
        v6 = Opened(Grant(door.name, ip_address("2001:db8::2"), (), 15.0))
        assert commands.plan(v4, door) == [
            ["/bin/sh", "-c", "/sbin/iptables -A INPUT -s 198.51.100.2 -p tcp --dport 22 -j ACCEPT"]
        ]
        assert commands.plan(v6, door) == [["/bin/sh", "-c", "echo 2001:db8::2 | logger"]]

    @pytest.mark.parametrize(
        ("text", "line", "reason"),
        [
            ("[d]\n sequence = 1,2\n bogus = 1\n", 3, "syntax error: unknown key 'BOGUS'"),
            ("[options]\n nonsense = 1\n", 2, "unknown option 'NONSENSE'"),
            ("[d]\n sequence = 1,70000\n", 2, "port '70000' is invalid"),
            ("[d]\n sequence = 1:sctp\n", 2, "unknown protocol"),
            ("[d]\n sequence = 1\n tcpflags = syn,bogus\n", 3, 'unrecognized flag "BOGUS"'),
            ("sequence = 1\n", 1, "all directives must belong to a section"),
            ("[d]\n seq_timeout = 5\n", 2, "empty knock sequence"),
            ("[d]\n sequence\n", 2, "syntax error"),
        ],
    )
    def test_knockd_errors(self, text, line, reason):
        with pytest.raises(ConfigError) as caught:
            knockd.from_text(text, "k.conf")
        assert str(caught.value).startswith(f"k.conf:{line}: "), str(caught.value)
        assert reason in str(caught.value)

    def test_flags_and_targets_in_the_engine(self):
        config = knockd.from_text(
            "[d]\n sequence = 1,2\n tcpflags = fin\n target = 198.51.100.1\n command = /bin/true\n",
            "k",
        )
        e = Engine(config.doors)
        fin, syn = 0x01, 0x02
        knock = lambda port, flags, to=SERVER: Knock(USER, Port("tcp", port), flags, to)  # noqa: E731
        assert e.knock(knock(1, fin), 0.0) == []
        assert e.knock(knock(2, syn), 0.1) == []  # wrong flags: ignored, not a reset
        assert e.knock(knock(2, fin, ip_address("198.51.100.10")), 0.2) == []  # other target
        [opened] = e.knock(knock(2, fin), 0.3)
        assert isinstance(opened, Opened)

    def test_one_time_sequence_files(self, tmp_path):
        path = tmp_path / "ots"
        path.write_text("# used\n 1,2\n\n not a sequence\n 3,4\n")
        ots = knockd.OneTimeFile(str(path))
        assert ots.current() == (Port("tcp", 1), Port("tcp", 2))
        ots.spend((Port("tcp", 1), Port("tcp", 2)))
        assert path.read_text() == "# used\n#1,2\n\n not a sequence\n 3,4\n"
        assert ots.current() == (Port("tcp", 3), Port("tcp", 4))
        ots.spend((Port("tcp", 3), Port("tcp", 4)))
        assert ots.current() is None

    def test_a_missing_one_time_sequence_file_is_refused_at_its_line(self, tmp_path):
        conf = tmp_path / "knockd.conf"
        missing = tmp_path / "nowhere" / "otp"
        conf.write_text(
            f"[options]\n\tlogfile = /tmp/x.log\n\n[ssh]\n\tOne_Time_Sequences = {missing}\n"
            "\tseq_timeout = 5\n\tstart_command = /bin/true %IP%\n"
        )
        with pytest.raises(ConfigError) as caught:
            knockd.load(str(conf))
        assert str(caught.value) == f"{conf}:5: cannot read {missing}: No such file or directory"


DEBIAN_KNOCKD_CONF = """\
[options]
\tUseSyslog

[openSSH]
\tsequence    = 7000,8000,9000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn

[closeSSH]
\tsequence    = 9000,8000,7000
\tseq_timeout = 5
\tcommand     = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT
\ttcpflags    = syn
"""


def test_import_knockd_makes_debians_open_close_pair_one_door(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text(DEBIAN_KNOCKD_CONF)
    text = knockd.to_toml(str(path))
    converted = config.parse(text)
    [door] = converted.doors
    assert door.name == "openSSH"
    assert [str(p) for p in door.close_sequence] == ["9000/tcp", "8000/tcp", "7000/tcp"]
    assert door.start_command[1] == "-A" and door.stop_command[1] == "-D"
    assert "Cmd_Timeout: then the stop command runs" not in text


def test_import_knockd_says_when_nothing_runs_at_the_end(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text("[ssh]\n sequence = 7000,8000\n command = /usr/bin/logger %IP%\n")
    text = knockd.to_toml(str(path))
    assert "nothing runs at its end: knockd's section has no stop command" in text


# Every key fwknopd 2.6's access.c knows.
FWKNOPD_26 = """SOURCE DESTINATION OPEN_PORTS RESTRICT_PORTS KEY KEY_BASE64 HMAC_KEY
HMAC_KEY_BASE64 HMAC_DIGEST_TYPE FW_ACCESS_TIMEOUT MAX_FW_TIMEOUT ENCRYPTION_MODE
ENABLE_CMD_EXEC ENABLE_CMD_SUDO_EXEC CMD_SUDO_EXEC_USER CMD_SUDO_EXEC_GROUP CMD_EXEC_USER
CMD_EXEC_GROUP CMD_CYCLE_OPEN CMD_CYCLE_CLOSE CMD_CYCLE_TIMER REQUIRE_USERNAME
REQUIRE_SOURCE_ADDRESS REQUIRE_SOURCE GPG_HOME_DIR GPG_EXE GPG_DECRYPT_ID GPG_DECRYPT_PW
GPG_ALLOW_NO_PW GPG_REQUIRE_SIG GPG_DISABLE_SIG GPG_IGNORE_SIG_VERIFY_ERROR GPG_REMOTE_ID
GPG_FINGERPRINT_ID ACCESS_EXPIRE ACCESS_EXPIRE_EPOCH FORCE_NAT FORCE_SNAT FORCE_MASQUERADE
DISABLE_DNAT FORWARD_ALL""".split()  # noqa: SIM905 - a list as fwknopd's source has it


@pytest.mark.parametrize("key", FWKNOPD_26)
def test_every_fwknopd_access_key_is_carried_out_or_refused_by_name(key):
    assert key in fwknop.ACCESS_KEYS or fwknop._refusal(key) is not None


def test_access_conf_keys_are_case_sensitive_as_in_fwknopd(caplog):
    text = ACCESS.replace("FW_ACCESS_TIMEOUT   45", "fw_access_timeout 5")
    with caplog.at_level("WARNING", "sesame"):
        first, _ = fwknop.parse_access(text, "a.conf")
    assert first.fw_access_timeout == 30  # the default: fwknopd ignores the key too
    assert "a.conf:8: unknown access.conf key 'fw_access_timeout' is ignored (fwknopd" in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("value", "allowed"), [("Y", True), ("yes", True), ("N", False), ("1", False)]
)
def test_yes_as_fwknopd_reads_it(value, allowed):
    text = ACCESS + f"SESAME_ALLOW_OTHER_ADDRESS {value}\n"
    _, second = fwknop.parse_access(text, "a.conf")
    assert second.allow_other_address is allowed


def nat_datagram(nat: str, local: bool = False) -> bytes:
    access = "198.51.100.2,tcp/22"
    return wire.encode("alice", access, KEY, HMAC, timestamp=STAMP, nat_access=nat, local_nat=local)


class TestFwknopNat:
    """What fwknopd's NAT decisions open, as grants: the server's port, its rewrite to
    the destination (fwknopd's DNAT rule) and the path there (its FORWARD rule)."""

    def opened(self, engine, data) -> list[str]:
        actions = recorded(engine, engine.fwknop(USER, SERVER, SPA, data, 0.0, STAMP), 0.0)
        return sorted(str(p) for a in actions if isinstance(a, Opened) for p in a.grant.ports)

    def test_force_nat_rewrites_every_request(self):
        e = fw_engine(force_nat=("10.0.5.20", 2200))
        assert self.opened(e, datagram()) == [
            "10.0.5.20:2200/tcp",
            "22/tcp",
            "22/tcp->10.0.5.20:2200",
        ]

    def test_forward_all_opens_every_port_and_any_path(self):
        e = fw_engine(force_nat=("10.0.5.20", 22), forward_all=True)
        assert self.opened(e, datagram()) == ["*->10.0.5.20:*", "10.0.5.20:*"]

    def test_disable_dnat_opens_the_path_alone(self):
        e = fw_engine(force_nat=("10.0.5.20", 22), disable_dnat=True)
        assert self.opened(e, datagram()) == ["10.0.5.20:22/tcp"]

    def test_a_clients_request_within_the_stanzas_networks(self):
        e = fw_engine(nat_destinations=(ip_network("10.0.5.0/24"),))
        assert "22/tcp->10.0.5.7:80" in self.opened(e, nat_datagram("10.0.5.7,80"))
        with pytest.raises(RemoteError, match="fwknop nat not allowed"):
            e.fwknop(USER, SERVER, SPA, nat_datagram("10.0.6.7,80"), 1.0, STAMP)
        with pytest.raises(RemoteError, match="fwknop nat not allowed"):  # no SESAME_LOCAL_NAT
            e.fwknop(USER, SERVER, SPA, nat_datagram("198.51.100.1,22", True), 1.0, STAMP)

    def test_a_request_the_stanza_does_not_allow_is_refused(self):
        with pytest.raises(RemoteError, match="fwknop nat not allowed"):
            fw_engine().fwknop(USER, SERVER, SPA, nat_datagram("10.0.5.7,80"), 0.0, STAMP)

    def test_local_nat_opens_this_hosts_port_behind_the_one_asked_for(self):
        stanza = FwknopStanza(
            name="fw",
            key=KEY,
            hmac_key=HMAC,
            open_ports=(Port("tcp", 22), Port("tcp", 2222)),
            local_nat=True,
        )
        e = Engine([], fwknop=[stanza])
        data = nat_datagram("198.51.100.1,2222", True)
        assert self.opened(e, data) == sorted(["2222/tcp", "22/tcp", f"22/tcp->{SERVER}:2222"])
