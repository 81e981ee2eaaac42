"""fwknop's files as a migrating user brings them, side by side with Debian's fwknop
and fwknopd: encryption modes and digests, stanzas chosen by -n and -D, and grants
for other ports that coexist with the first, each expiring on its own."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

from sesame.lab import reachable
from tests.helpers.fwknop import HMAC, KEY, debian_fwknop, private, serve_access
from tests.helpers.lab import require

SHORT = "short-key"  # a legacy-mode passphrase (16 bytes at most)

# One stanza per encryption mode, written as fwknop's documentation writes them: tabs,
# a trailing ';', a ';' comment, the colon form.
MODES = f"""\
; one stanza per mode
SOURCE\tANY
OPEN_PORTS\ttcp/22, udp/53
KEY_BASE64:\t{KEY};
HMAC_KEY_BASE64\t{HMAC}
FW_ACCESS_TIMEOUT\t60

SOURCE ANY;
OPEN_PORTS tcp/2201
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
HMAC_DIGEST_TYPE sha3_256
ENCRYPTION_MODE CTR

SOURCE ANY
OPEN_PORTS tcp/2202
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
ENCRYPTION_MODE cfb

SOURCE ANY
OPEN_PORTS tcp/2203
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
ENCRYPTION_MODE ofb

SOURCE ANY
OPEN_PORTS tcp/2204
KEY {SHORT}
ENCRYPTION_MODE legacy
SESAME_LEGACY_NO_HMAC Y

SOURCE ANY
OPEN_PORTS tcp/2222
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
"""


fwknop = debian_fwknop


def keys(*extra: str) -> tuple[str, ...]:
    return ("--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC, *extra)


def test_debian_fwknop_in_every_mode_and_digest_opens_sesame(lab):
    daemon = serve_access(lab, MODES)
    user = lab.user.ipv4
    sends = [
        (keys("-A", "tcp/22", "--digest-type", "md5"), "fwknop1", "22/tcp"),
        (keys("-A", "tcp/2201", "-M", "ctr", "--hmac-digest-type", "sha3_256"), "fwknop2", ""),
        (keys("-A", "tcp/2202", "-M", "cfb", "--digest-type", "sha3_512"), "fwknop3", ""),
        (keys("-A", "tcp/2203", "-M", "ofb", "--digest-type", "sha384"), "fwknop4", ""),
        (("-A", "tcp/2204", "-M", "legacy", "--key-rijndael", SHORT), "fwknop5", ""),
    ]
    for args, stanza, port in sends:
        mark = daemon.mark()
        fwknop(lab, *args)
        port = port or f"{args[args.index('-A') + 1].split('/')[1]}/tcp"
        daemon.wait_for(rf"opened door {stanza} to {user}: {port}", 10, since=mark)
    assert {f"{user} {p}/tcp" for p in (22, 2201, 2202, 2203, 2204)} <= set(lab.grants())
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    # The first stanza's keys verify but it denies the port: the next one that
    # matches decides, as in fwknopd (checked beside it below).
    mark = daemon.mark()
    fwknop(lab, *keys("-A", "tcp/2222"))
    daemon.wait_for(rf"opened door fwknop6 to {user}: 2222/tcp", 10, since=mark)


def test_requests_for_other_ports_open_beside_the_first(lab):
    """As fwknopd keeps a rule per port until each expires, sesame keeps a grant per
    port: a second request does not close the first."""
    daemon = serve_access(lab, MODES)
    user = lab.user.ipv4
    mark = daemon.mark()
    fwknop(lab, *keys("-A", "tcp/22", "--fw-timeout", "20"))
    daemon.wait_for(rf"opened door fwknop1 to {user}: 22/tcp", 10, since=mark)
    fwknop(lab, *keys("-A", "udp/53"))
    daemon.wait_for(rf"opened door fwknop1 to {user}: 53/udp", 10, since=mark)
    grants = lab.grants()
    assert grants[f"{user} 22/tcp"] <= 20 < grants[f"{user} 53/udp"] <= 60
    assert not [line for line in daemon.lines[mark:] if "replaced" in line]
    # Asking for both refreshes each, never shortening one (fwknopd's older rule stays).
    mark = daemon.mark()
    fwknop(lab, *keys("-A", "tcp/22,udp/53", "--fw-timeout", "30"))
    daemon.wait_for(rf"refreshed door fwknop1 for {user}: 22/tcp", 10, since=mark)
    daemon.wait_for(rf"refreshed door fwknop1 for {user}: 53/udp", 10, since=mark)
    grants = lab.grants()
    assert 20 < grants[f"{user} 22/tcp"] <= 30 < grants[f"{user} 53/udp"] <= 60
    # A restart adopts them with their own deadlines.
    daemon.stop()
    daemon = serve_access(lab, MODES)
    left = lab.grants()
    assert 20 < left[f"{user} 22/tcp"] <= 30 and 40 < left[f"{user} 53/udp"] <= 60


RC = f"""\
# ~/.fwknoprc as fwknop writes it, the server left to -D
[default]
HMAC_DIGEST_TYPE\tsha3_256
USE_HMAC\t\tY

[office]
ACCESS\t\t\ttcp/22
KEY_BASE64:\t\t{KEY}
HMAC_KEY_BASE64:\t{HMAC}
ENCRYPTION_MODE\t\tCTR
DIGEST_TYPE\t\tsha512
SPOOF_USER\t\talice
"""

FWKNOPD_ACCESS = f"""\
SOURCE ANY
OPEN_PORTS tcp/22, udp/53
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
HMAC_DIGEST_TYPE sha3_256
ENCRYPTION_MODE CTR
FW_ACCESS_TIMEOUT 60

SOURCE ANY
OPEN_PORTS tcp/2204
KEY {SHORT}
ENCRYPTION_MODE legacy

SOURCE ANY
OPEN_PORTS tcp/2222
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
HMAC_DIGEST_TYPE sha3_256
ENCRYPTION_MODE CTR
"""


def test_sesame_knock_fwknop_with_n_and_d_opens_debian_fwknopd(lab):
    fwknopd = require("fwknopd")
    iptables = require("iptables")
    run = Path(lab.tmp, "run")
    run.mkdir()
    conf = private(Path(lab.tmp, "fwknopd.conf"), f"PCAP_INTF br0\nFWKNOP_RUN_DIR {run}\n")
    access = private(Path(lab.tmp, "access.conf"), FWKNOPD_ACCESS)
    rc = private(Path(lab.tmp, "rc"), RC)
    out = Path(lab.tmp, "fwknopd.out")
    argv = [fwknopd, "-f", "-v", "-c", conf, "-a", access, "-i", "br0"]
    argv += ["-d", f"{run}/digest.cache", "-p", f"{run}/pid"]
    with open(out, "w") as handle:
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.server.netns, *argv],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            added = "Added access rule to FWKNOP_INPUT for"
            wait_for_count(out, "Starting fwknopd main event loop", 1, process)
            knock = ("knock", "--fwknop", "--rc-file", rc, "-n", "office", "-D", lab.server.ipv4)
            lab.sesame(lab.user.netns, *knock)
            wait_for_count(out, f"{added} {lab.user.ipv4}", 1, process)
            lab.sesame(lab.user.netns, *knock, "-A", "udp/53")
            wait_for_count(out, f"{added} {lab.user.ipv4}", 2, process)
            lab.sesame(lab.user.netns, *knock, "-A", "tcp/2222")  # the third stanza's
            wait_for_count(out, f"{added} {lab.user.ipv4}", 3, process)
            rules = lab.run(lab.server.netns, iptables, "-S", "FWKNOP_INPUT").stdout
            for port in (22, 53, 2222):  # each kept
                assert f"--dport {port} " in rules, rules
            legacy = base64.b64encode(SHORT.encode()).decode()
            lab.sesame(
                lab.stranger.netns,
                "knock",
                "--fwknop",
                "-D",
                lab.server.ipv4,
                "-A",
                "tcp/2204",
                "-M",
                "legacy",
                "--fwknop-key-base64",
                legacy,
            )
            wait_for_count(out, f"{added} {lab.stranger.ipv4}", 1, process)
        finally:
            process.terminate()
            process.wait(10)


def wait_for_count(
    path: Path, text: str, count: int, process: subprocess.Popen, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while (content := path.read_text()).count(text) < count:
        assert process.poll() is None, content
        assert time.monotonic() < deadline, content[-3000:]
        time.sleep(0.05)


def test_weak_keys_are_refused_as_fwknopd_refuses_them(lab):
    fwknopd = require("fwknopd")
    run = Path(lab.tmp, "run")
    run.mkdir()
    conf = private(Path(lab.tmp, "fwknopd.conf"), f"PCAP_INTF br0\nFWKNOP_RUN_DIR {run}\n")
    same = f"SOURCE ANY\nOPEN_PORTS tcp/22\nKEY_BASE64 {KEY}\nHMAC_KEY_BASE64 {KEY}\n"
    access = private(Path(lab.tmp, "access.conf"), same)
    argv = [fwknopd, "-f", "-c", conf, "-a", access, "-i", "br0", "-p", f"{run}/pid"]
    theirs = lab.run(lab.server.netns, *argv, check=False)
    assert theirs.returncode != 0
    assert "should not be identical" in theirs.stdout + theirs.stderr
    ours = lab.sesame(lab.server.netns, "check", "--fwknop-access", access, check=False)
    assert ours.returncode == 2
    assert ours.stderr.startswith(f"{access}:4: the HMAC key is the encryption key")
