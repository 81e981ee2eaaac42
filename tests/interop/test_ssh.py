"""``sesame connect`` as ssh's ProxyCommand, with Debian's OpenSSH: the client runs as
an unprivileged user, sshd listens behind the gate (port 2222), and ssh logs in and
runs a command through each kind of door, against sesame, knockd and fwknopd."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sesame.lab import blocked
from tests.helpers.fwknop import HMAC, KEY, private
from tests.helpers.lab import require
from tests.helpers.spa import ALICE, BOB, SERVER_CONFIG
from tests.helpers.ssh import PORT, sshd

# The SPA and one-time doors of the SPA tests, opening sshd's port, and a plain one.
SERVER = (
    SERVER_CONFIG.replace('"22/tcp"', '"2222/tcp"')
    + """
[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 10
open = ["2222/tcp"]
open_for = {open_for}
"""
)

CLIENT = """\
[[server]]
name = "home"
host = "{host}"
user = "alice"
key = "{key}"
door = "ssh"

[server.doors.ssh]
open = ["2222/tcp"]

[server.doors.phone]
port_range = [40000, 40999]
open = ["2222/tcp"]

[server.doors.plain]
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
open = ["2222/tcp"]
"""


@pytest.fixture
def ssh(lab):
    require("setpriv")
    with sshd(lab.server.netns, lab.tmp) as running:
        config = lab.write_config(SERVER.format(tmp=lab.tmp, alice=ALICE, bob=BOB, open_for=30))
        lab.serve(Path(config).read_text())
        running.config = running.file(  # type: ignore[attr-defined]
            "client.toml", CLIENT.format(host=lab.server.ipv4, key=ALICE)
        )
        yield running


def logged_in(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"in\n"


def test_ssh_logs_in_through_each_kind_of_door_with_fdpass(lab, ssh):
    config = ["--client-config", ssh.config]
    for door in ("ssh", "phone", "plain"):
        mark = lab.daemon.mark()
        # %n: the host as given to ssh ("home"), as README's two lines write it
        logged_in(ssh.ssh(lab.user.netns, [*config, "--door", door, "%n"], "echo in"))
        lab.daemon.wait_for(rf"opened door {door} to {lab.user.ipv4}: 2222/tcp", 10, since=mark)
        lab.sesame(lab.server.netns, "revoke", "-c", lab.tmp + "/sesame.toml", lab.user.ipv4)
        assert lab.grants() == {}
    # A plain sequence given on the command line, for any server that takes one.
    proxy = ["--sequence", "7000/tcp,8000/tcp,9000/udp", lab.server.ipv4]
    logged_in(ssh.ssh(lab.user.netns, proxy, "echo in"))


def test_the_stranger_stays_out_while_the_user_is_logged_in(lab, ssh):
    argv = ssh.argv(lab.user.netns, ["--client-config", ssh.config, "home"], "echo in; sleep 3")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as session:
        assert session.stdout is not None
        assert session.stdout.readline() == b"in\n"  # logged in, the session goes on
        assert blocked(lab.stranger.netns, lab.server.ipv4, PORT)
        session.wait(30)
    assert session.returncode == 0


def test_the_stdio_relay_carries_megabytes_intact(lab, ssh):
    data = os.urandom(4 * 1024 * 1024)
    result = ssh.ssh(
        lab.user.netns,
        ["--client-config", ssh.config, "home"],
        "sha256sum",
        fdpass=False,
        stdin=data,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_a_name_with_an_unreachable_ipv6_address_gets_in_over_ipv4(lab, ssh):
    # The client's /etc/hosts (ip netns exec mounts /etc/netns/NS/hosts over it): an
    # IPv6 address nobody has on the lab's link, first, and the server's IPv4.
    hosts = Path("/etc/netns", lab.user.netns)
    hosts.mkdir(parents=True)
    try:
        unreachable = lab.server.ipv6.rsplit(":", 1)[0] + ":abcd"
        (hosts / "hosts").write_text(
            f"127.0.0.1 localhost\n{unreachable} dual.test\n{lab.server.ipv4} dual.test\n"
        )
        config = ssh.file("dual.toml", CLIENT.format(host="dual.test", key=ALICE))
        mark = lab.daemon.mark()
        began = time.monotonic()
        logged_in(ssh.ssh(lab.user.netns, ["--client-config", config, "home"], "echo in"))
        assert time.monotonic() - began < 10
        lab.daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}: 2222/tcp", 10, since=mark)
        assert list(lab.grants()) == [f"{lab.user.ipv4} {PORT}/tcp"]  # knocked where it went
    finally:
        shutil.rmtree(hosts)


def test_a_wrong_key_or_sequence_fails_clearly_within_the_timeout(lab, ssh):
    wrong = ssh.file("wrong.toml", CLIENT.format(host=lab.server.ipv4, key=BOB))
    for proxy in (
        ["--client-config", wrong, "home"],
        ["--sequence", "7000/tcp,8000/tcp,9001/udp", lab.server.ipv4],
    ):
        began = time.monotonic()
        result = lab.run(
            lab.user.netns,
            *ssh.connect_argv(),
            "--timeout",
            "3",
            *proxy,
            str(PORT),
            check=False,
        )
        assert time.monotonic() - began < 8
        assert result.returncode == 1
        assert f"no connection to port {PORT} within 3 s" in result.stderr
        assert result.stdout == ""
    assert lab.grants() == {}


KNOCKD = """\
[options]
    Interface = br0
    LogFile = {dir}/log

[ssh]
    sequence    = 7000,8000,9000:udp
    seq_timeout = 10
    command     = {iptables} -I INPUT 1 -s %IP% -p tcp --dport {port} -j ACCEPT
"""

FWKNOPD_ACCESS = f"""\
SOURCE ANY
OPEN_PORTS tcp/{PORT}
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
REQUIRE_USERNAME alice
"""

RC = f"""\
[office]
SPA_SERVER {{server}}
KEY_BASE64 {KEY}
HMAC_KEY_BASE64 {HMAC}
SPOOF_USER alice
"""


def test_ssh_through_debian_knockd_and_fwknopd(lab):
    """The same host guarded by knockd (a plain sequence) and then by fwknopd (an SPA):
    iptables drops port 2222 until they add a rule."""
    iptables = require("iptables")
    require("setpriv")
    drop = ["-A", "INPUT", "-i", "br0", "-p", "tcp", "--dport", str(PORT), "-j", "DROP"]
    lab.run(lab.server.netns, iptables, *drop)
    with sshd(lab.server.netns, lab.tmp) as ssh:
        assert blocked(lab.user.netns, lab.server.ipv4, PORT)
        knockd_dir = Path(lab.tmp, "knockd")
        knockd_dir.mkdir()
        conf = knockd_dir / "knockd.conf"
        conf.write_text(KNOCKD.format(dir=knockd_dir, iptables=iptables, port=PORT))
        from tests.interop.test_knockd import start_knockd, stop

        knockd = start_knockd(lab, conf)
        try:
            proxy = ["--sequence", "7000,8000,9000/udp", lab.server.ipv4]
            logged_in(ssh.ssh(lab.user.netns, proxy, "echo in"))
        finally:
            stop(knockd)
        fwknopd = require("fwknopd")
        run = Path(lab.tmp, "run")
        run.mkdir()
        fconf = private(Path(lab.tmp, "fwknopd.conf"), f"PCAP_INTF br0\nFWKNOP_RUN_DIR {run}\n")
        access = private(Path(lab.tmp, "access.conf"), FWKNOPD_ACCESS)
        argv = [fwknopd, "-f", "-c", fconf, "-a", access, "-i", "br0", "-d", f"{run}/digests"]
        argv += ["-p", f"{run}/pid"]
        out = open(Path(lab.tmp, "fwknopd.out"), "w")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", lab.server.netns, *argv], stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 20
            while "main event loop" not in Path(lab.tmp, "fwknopd.out").read_text():
                assert daemon.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            rc = ssh.file("fwknoprc", RC.format(server=lab.server.ipv4))
            stranger_ip = lab.stranger.ipv4
            proxy = ["--fwknop", "--rc-file", rc, "office"]
            logged_in(ssh.ssh(lab.stranger.netns, proxy, "echo in"))
            assert f"Added access rule to FWKNOP_INPUT for {stranger_ip}" in (
                Path(lab.tmp, "fwknopd.out").read_text()
            )
        finally:
            daemon.terminate()
            daemon.wait(10)
            out.close()
