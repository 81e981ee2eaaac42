"""The fwknop client's ~/.fwknoprc as fwknop 2.6 reads it (client/config_init.c), the
client config's [[fwknop]] tables, and `sesame import fwknop` of an rc file."""

from __future__ import annotations

import base64
import logging
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sesame import clientconfig
from sesame.compat import fwknoprc, fwknoprc_toml
from sesame.errors import ConfigError
from sesame.wire import fwknop as wire

KEY_B64 = "JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20="
HMAC_B64 = base64.b64encode(b"h" * 64).decode()
KEY, HMAC = base64.b64decode(KEY_B64), b"h" * 64

RC = f"""\
# written as fwknop's own documentation writes it
[default]
SPA_SERVER_PORT     62222
HMAC_DIGEST_TYPE    sha512

[home]
SPA_SERVER          203.0.113.5
ACCESS              tcp/22
ALLOW_IP            source
KEY_BASE64          {KEY_B64}
HMAC_KEY_BASE64     {HMAC_B64}
USE_HMAC            Y
FW_TIMEOUT          120
SPOOF_USER          alice
"""

# Every variable fwknop 2.6 knows (the table in its client/config_init.c).
FWKNOP_26 = [
    "DIGEST_TYPE",
    "SPA_SERVER_PROTO",
    "SPA_SERVER_PORT",
    "SPA_SOURCE_PORT",
    "FW_TIMEOUT",
    "ALLOW_IP",
    "TIME_OFFSET",
    "ENCRYPTION_MODE",
    "USE_GPG",
    "USE_GPG_AGENT",
    "GPG_RECIPIENT",
    "GPG_SIGNER",
    "GPG_HOMEDIR",
    "GPG_EXE",
    "GPG_SIGNING_PW",
    "GPG_SIGNING_PW_BASE64",
    "GPG_NO_SIGNING_PW",
    "SPOOF_USER",
    "SPOOF_SOURCE_IP",
    "ACCESS",
    "SPA_SERVER",
    "RAND_PORT",
    "KEY",
    "KEY_BASE64",
    "HMAC_DIGEST_TYPE",
    "HMAC_KEY_BASE64",
    "HMAC_KEY",
    "USE_HMAC",
    "USE_WGET_USER_AGENT",
    "KEY_FILE",
    "HMAC_KEY_FILE",
    "NAT_ACCESS",
    "HTTP_USER_AGENT",
    "RESOLVE_URL",
    "SERVER_RESOLVE_IPV4",
    "NAT_LOCAL",
    "NAT_RAND_PORT",
    "NAT_PORT",
    "VERBOSE",
    "RESOLVE_IP_HTTP",
    "RESOLVE_IP_HTTPS",
    "RESOLVE_HTTP_ONLY",
    "WGET_CMD",
    "NO_SAVE_ARGS",
]


def parse(text: str, name: str = "home", server: str | None = None) -> fwknoprc.RcStanza:
    return fwknoprc.parse(text, ".fwknoprc", name, server)


def test_a_stanza_over_its_defaults():
    rc = parse(RC)
    assert (rc.server, rc.port, rc.access, rc.allow_ip) == (
        "203.0.113.5",
        62222,
        "tcp/22",
        "source",
    )
    assert (rc.hmac_type, rc.fw_timeout, rc.user) == ("sha512", 120, "alice")
    assert rc.key == KEY and rc.hmac_key == HMAC
    assert (rc.mode, rc.digest_type, rc.time_offset, rc.random_port) == ("cbc", "sha256", 0, False)


def test_every_fwknop_variable_is_known():
    assert sorted(fwknoprc.VARIABLES) == sorted(FWKNOP_26)


def test_read_as_fwknop_reads_it(caplog):
    text = (
        "; a comment as fwknop allows it\n"
        "[HOME]\n"  # stanza names match in any case
        "SPA_SERVER:\t203.0.113.5\n"  # the colon form, a tab
        f"KEY_BASE64: {KEY_B64};   # the value ends at ';'\n"
        f"HMAC_KEY_BASE64 {HMAC_B64}#no blank before the comment\n"
        "ACCESS tcp/22, udp/53\n"  # fwknop reads 'tcp/22,' and no more
        "FW_TIMEOUT 30\n"
        "FW_TIMEOUT 60\n"  # the later one wins
    )
    with caplog.at_level(logging.WARNING, "sesame"):
        rc = parse(text)
    assert (rc.server, rc.key, rc.hmac_key, rc.fw_timeout) == ("203.0.113.5", KEY, HMAC, 60)
    assert rc.access == "tcp/22,"
    assert ".fwknoprc:6: fwknop reads ACCESS as 'tcp/22,'; the rest of the line" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "sesame"):
        parse(RC + "KEY secret-passphrase words\n")
    assert ".fwknoprc:15: fwknop reads KEY as its first word;" in caplog.text
    assert "secret" not in caplog.text


def test_unknown_names_are_warned_about_and_left_out(caplog):
    with caplog.at_level(logging.WARNING, "sesame"):
        rc = parse(RC + "NOPE 1\nspoof_user bob\n")
    assert rc.user == "alice"
    assert ".fwknoprc:15: NOPE is not an fwknop variable: ignored" in caplog.text
    assert ".fwknoprc:16: spoof_user is not an fwknop variable (its names are upper" in caplog.text


def test_settings_outside_a_stanza_and_other_stanzas_are_not_read(caplog):
    text = "SPA_SERVER 192.0.2.1\n" + RC + "[work]\nSPA_SERVER bad value here\n"
    with caplog.at_level(logging.WARNING, "sesame"):
        assert parse(text).server == "203.0.113.5"
    assert ".fwknoprc:1: SPA_SERVER is outside any [stanza]: ignored" in caplog.text


def test_keys_as_fwknop_takes_them():
    both = RC + "KEY plain-passphrase\nHMAC_KEY plain-hmac\n"
    rc = parse(both)  # KEY over KEY_BASE64, HMAC_KEY over HMAC_KEY_BASE64
    assert (rc.key, rc.hmac_key) == (b"plain-passphrase", b"plain-hmac")
    # USE_HMAC N does not turn off an HMAC a key asks for, in fwknop either.
    assert parse(RC.replace("USE_HMAC            Y", "USE_HMAC N")).hmac_key == HMAC
    no_hmac = RC.replace(f"HMAC_KEY_BASE64     {HMAC_B64}\n", "")
    with pytest.raises(ConfigError, match=r":\d+: USE_HMAC Y, but no HMAC_KEY_BASE64"):
        parse(no_hmac)
    assert parse(no_hmac.replace("USE_HMAC            Y\n", "")).hmac_key is None


def test_key_file(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("# fwknop's key file\n203.0.113.50: wrong\n203.0.113.5:  the-key\n")
    keys.chmod(0o600)
    text = RC.replace(f"KEY_BASE64          {KEY_B64}", f"KEY_FILE {keys}")
    assert parse(text).key == b"the-key"
    with pytest.raises(ConfigError, match=f"{keys} has no line '198.51.100.1: KEY'"):
        parse(text, server="198.51.100.1")
    keys.chmod(0o644)
    with pytest.raises(ConfigError, match=r"^\.fwknoprc:\d+: .*chmod 600"):
        parse(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("60", 60), ("+1H", 3600), ("-5m", -300), ("2d", 172800), ("-30s", -30)],
)
def test_time_offset(value, seconds):
    assert parse(RC + f"TIME_OFFSET {value}\n").time_offset == seconds


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("USE_GPG Y", "USE_GPG: GnuPG is not supported"),
        ("GPG_SIGNING_PW secret", "GPG_SIGNING_PW: GnuPG is not supported"),
        ("SPOOF_SOURCE_IP 192.0.2.9", "SPOOF_SOURCE_IP: a forged source address"),
        ("NAT_ACCESS 192.168.1.2", "NAT_ACCESS: '192.168.1.2' is not ADDRESS,PORT"),
        ("NAT_PORT 0", "NAT_PORT: '0' is not a port"),
        ("HMAC_KEY_FILE /etc/k", "HMAC_KEY_FILE: fwknop 2.6 takes HMAC_KEY_FILE for KEY_FILE"),
        ("SPA_SERVER_PROTO tcp", "SPA_SERVER_PROTO: tcp: sesame sends SPA over UDP only"),
        ("ALLOW_IP resolve", "ALLOW_IP: asking a web service for this host's address"),
        ("RESOLVE_IP_HTTPS Y", "RESOLVE_IP_HTTPS: asking a web service"),
        ("ENCRYPTION_MODE ecb", "ENCRYPTION_MODE: ECB is refused"),
        ("ENCRYPTION_MODE legacy", "legacy mode carries no HMAC"),
        ("HMAC_DIGEST_TYPE whirlpool", "'whirlpool' is not an HMAC digest: one of md5,"),
        ("DIGEST_TYPE crc32", "'crc32' is not a digest"),
        ("TIME_OFFSET soon", "TIME_OFFSET: 'soon' is not an offset"),
        ("FW_TIMEOUT 70000", "FW_TIMEOUT: '70000' is not a number of seconds"),
        ("SPA_SERVER_PORT 0", "SPA_SERVER_PORT: '0' is not a port"),
        ("KEY __CHANGEME__", "the key is still __CHANGEME__"),
        (f"HMAC_KEY_BASE64 {KEY_B64}", "the HMAC key is the encryption key"),
        ("ACCESS", "ACCESS has no value"),
    ],
)
def test_refusals_name_the_line_and_the_reason(extra, reason):
    with pytest.raises(ConfigError) as caught:
        parse(RC + extra + "\n")
    assert str(caught.value).startswith(".fwknoprc:")
    assert reason in str(caught.value)
    assert caught.value.line in (15, 0) or extra.startswith(("KEY ", "HMAC_KEY_BASE64"))


def test_a_resolve_given_up_later_is_not_refused():
    # As fwknop: ALLOW_IP with an address cancels a resolve asked for before it.
    assert parse(RC + "RESOLVE_IP_HTTPS Y\nALLOW_IP 198.51.100.9\n").allow_ip == "198.51.100.9"


def test_nat_requests():
    rc = parse(RC + "NAT_ACCESS 192.168.1.2:22\nNAT_PORT 2222\nNAT_RAND_PORT N\n")
    assert (rc.nat_access, rc.nat_port, rc.nat_local, rc.nat_rand_port) == (
        "192.168.1.2,22",
        2222,
        False,
        False,
    )
    assert parse(RC + "NAT_LOCAL Y\n").nat_local


def test_settings_that_have_no_effect_load():
    no_effect = "\n".join(f"{name} x" for name in fwknoprc.NO_EFFECT)
    assert parse(RC + no_effect + "\nUSE_GPG N\nNAT_RAND_PORT N\n").key == KEY


def test_modes_and_digests_that_load():
    rc = parse(RC + "ENCRYPTION_MODE CTR\nDIGEST_TYPE sha3_512\nHMAC_DIGEST_TYPE sha3_256\n")
    assert (rc.mode, rc.digest_type, rc.hmac_type) == ("ctr", "sha3_512", "sha3_256")
    legacy = "[old]\nSPA_SERVER 192.0.2.1\nKEY short\nENCRYPTION_MODE legacy\n"
    assert parse(legacy, "old").mode == "legacy"
    # fwknop cuts a longer legacy key to 16 bytes, saying so (sesame's knock too).
    long_key = parse(legacy.replace("short", "a-key-of-more-than-16-bytes"), "old")
    assert long_key.key == b"a-key-of-more-than-16-bytes"


def test_choosing_the_stanza_and_server_as_fwknop():
    stanzas = fwknoprc.read(RC, ".fwknoprc")
    choose = fwknoprc.choose
    assert choose(stanzas, "HOME", None, None) == ("HOME", None)  # -n
    assert choose(stanzas, "work", None, None) == (None, None)  # -n of no stanza
    assert choose(stanzas, "home", None, "192.0.2.7") == ("home", "192.0.2.7")  # -n, -D
    assert choose(stanzas, None, "home", None) == ("home", None)  # HOST names a stanza
    assert choose(stanzas, None, "192.0.2.7", None) == ("default", "192.0.2.7")  # a host
    assert choose(stanzas, None, None, "192.0.2.7") == ("default", "192.0.2.7")  # -D alone
    with pytest.raises(ConfigError, match=r"^\.fwknoprc: no KEY_BASE64 \(or KEY, or KEY_FILE\)$"):
        parse(RC, "default", "192.0.2.7")  # this [default] alone has no key
    rc = parse(RC.replace("[home]\n", ""), "default", "192.0.2.7")
    assert rc.server == "192.0.2.7"  # -D over SPA_SERVER


def test_import_into_client_config_round_trips(tmp_path):
    rc_path = tmp_path / "rc"
    rc_path.write_text(RC + "GPG_HOMEDIR /root/.gnupg\nTIME_OFFSET -2m\nRAND_PORT Y\n")
    rc_path.chmod(0o600)
    toml = fwknoprc_toml.to_toml(str(rc_path))
    assert "# gpg_homedir: left out, no effect in sesame" in toml
    config = tmp_path / "client.toml"
    config.write_text(toml)
    config.chmod(0o600)
    entries = clientconfig.fwknop(str(config))
    converted = fwknoprc.stanza(fwknoprc.options(entries, str(config), "home"), "home")
    original = fwknoprc.load(str(rc_path), "home")
    assert converted == original
    assert converted.time_offset == -120 and converted.random_port


def test_client_config_fwknop_refusals_name_the_line(tmp_path):
    config = tmp_path / "client.toml"
    config.write_text('[[fwknop]]\nname = "x"\nspa_server = "192.0.2.1"\nuse_gpg = true\n')
    config.chmod(0o600)
    entries = clientconfig.fwknop(str(config))
    with pytest.raises(ConfigError, match=r"client\.toml:4: USE_GPG: GnuPG is not supported"):
        fwknoprc.stanza(fwknoprc.options(entries, str(config), "x"), "x")
    assert clientconfig.load(str(config)) == {}  # [[server]] readers are not disturbed


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400))
def test_hostile_rc_text_is_read_or_refused_cleanly(text):
    try:
        fwknoprc.parse(text, "rc", "default", "192.0.2.1")
    except ConfigError as exc:
        assert str(exc).startswith("rc")


def test_every_mode_and_digest_round_trips():
    for mode in wire.MODES:
        for digest in wire.DIGEST_TYPES:
            hmac_key = None if mode == "legacy" else HMAC
            data = wire.encode(
                "alice",
                "198.51.100.2,tcp/22",
                KEY,
                hmac_key,
                timestamp=1_700_000_000,
                digest_type=digest,
                mode=mode,
                random=os.urandom(16),
            )
            message = wire.decode(data, KEY, hmac_key, mode=mode)
            assert message.access == "198.51.100.2,tcp/22", (mode, digest)
        with pytest.raises(Exception, match="fwknop"):  # another mode does not decrypt
            wire.decode(data, KEY, hmac_key, mode="cfb" if mode != "cfb" else "ofb")
