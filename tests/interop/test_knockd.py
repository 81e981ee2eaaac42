"""knockd, both ways and side by side: Debian's knockd and sesame serving the same
knockd.conf, on the same traffic, open the same doors — except where knockd is known
to be wrong (a sequential port scan completes an ascending sequence)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sesame.lab import DaemonProcess, knock_from
from sesame.netns import ip
from tests.helpers.lab import require

KNOCKD_CONF = """\
[options]
    Interface = br0
    UseSyslog
    LogFile = {dir}/log
    PidFile = {dir}/pidfile

[plain]
    sequence    = 7000,8000,9000:udp
    seq_timeout = 5
    command     = /usr/bin/touch {dir}/plain-%IP%

[Flags]
    Sequence = 7100,7200
    TCPFlags = fin,!syn
    Command  = /usr/bin/touch {dir}/flags-%IP%

[onetime]
    One_Time_Sequences = {dir}/ots
    Start_Command      = /usr/bin/touch {dir}/onetime-%IP%

[target]
    sequence = 7300,7400
    target   = 198.51.100.1
    start_command = /usr/bin/touch {dir}/target-%IP%

[ascending]
    sequence = 7500,7501,7502
    timeout  = 20
    start_command = /usr/bin/touch {dir}/ascending-%IP%

[timed]
    sequence    = 7600
    cmd_timeout = 1
    start_command = /usr/bin/touch {dir}/timed-%IP%
    stop_command  = /bin/rm {dir}/timed-%IP%
    start_command_6 = /usr/bin/touch {dir}/timed6-%IP%
    stop_command_6  = /bin/rm {dir}/timed6-%IP%
"""
ONE_TIME = " 7700,7701\n 7710,7711\n 7720,7721\n"


def wait_for_file(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def start_knockd(lab, conf: Path) -> subprocess.Popen:
    knockd = require("knockd")
    out = open(conf.parent / "stdout", "w")  # noqa: SIM115 - closed by the finalizer below
    process = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.server.netns,
            knockd,
            "-c",
            str(conf),
            "-v",
            "-p",
            str(conf.parent / "pid"),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    process.out = out  # type: ignore[attr-defined]
    wait_for_file(conf.parent / "log")  # knockd writes its log once it listens
    deadline = time.monotonic() + 10
    while "listening on br0" not in (conf.parent / "stdout").read_text():
        assert process.poll() is None, (conf.parent / "stdout").read_text()
        assert time.monotonic() < deadline, (conf.parent / "stdout").read_text()
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)
    process.out.close()  # type: ignore[attr-defined]


def setup_dirs(lab) -> tuple[Path, Path]:
    dirs = []
    for name in ("knockd", "sesame"):
        d = Path(lab.tmp, name)
        d.mkdir()
        (d / "conf").write_text(KNOCKD_CONF.format(dir=d))
        (d / "ots").write_text(ONE_TIME)
        dirs.append(d)
    return dirs[0], dirs[1]


def hping(lab, netns: str, *ports: int, flags: str = "-F") -> None:
    hping3 = require("hping3")
    for port in ports:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "timeout",
                "5",
                hping3,
                flags,
                "-c",
                "1",
                "-p",
                str(port),
                lab.server.ipv4,
            ],
            capture_output=True,
            check=False,
        )


def test_debian_knockd_and_sesame_open_the_same_doors(lab):
    ip("-n", lab.server.netns, "addr", "add", "198.51.100.10/24", "dev", "br0")
    k_dir, s_dir = setup_dirs(lab)
    knockd = start_knockd(lab, k_dir / "conf")
    try:
        daemon = DaemonProcess(
            lab.server.netns, str(s_dir / "conf"), "-v", source="--knockd-conf"
        ).start()
        lab.daemon = daemon
        server, user, stranger = lab.server.ipv4, lab.user, lab.stranger
        # Debian's knock client, and sesame's, in the right order and the wrong one.
        lab.run(user.netns, require("knock"), server, "7000", "8000", "9000:udp")
        knock_from(stranger.netns, server, "8000/tcp", "7000/tcp", "9000/udp")
        # TCPFlags = fin,!syn: SYNs are ignored, FINs count.
        knock_from(user.netns, server, "7100/tcp", "7200/tcp")
        hping(lab, user.netns, 7100, 7200)
        # One-time sequences: the first line opens once, then the second.
        knock_from(user.netns, server, "7700/tcp", "7701/tcp")
        for d in (k_dir, s_dir):  # knockd loses packets while it swaps its pcap filter
            wait_for_file(d / f"onetime-{user.ipv4}")
        knock_from(stranger.netns, server, "7710/tcp", "7711/tcp")
        # Target: only knocks sent to 198.51.100.1 count.
        knock_from(user.netns, "198.51.100.10", "7300/tcp", "7400/tcp")
        knock_from(stranger.netns, server, "7300/tcp", "7400/tcp")
        # IPv6, and a stop command after Cmd_Timeout.
        knock_from(user.netns, lab.server.ipv6, "7000/tcp", "8000/tcp", "9000/udp")
        knock_from(user.netns, lab.server.ipv6, "7600/tcp")
        # A used one-time sequence opens nothing (sesame also takes the replayer for a
        # scanner: its ports are closed ports now).
        knock_from(stranger.netns, server, "7700/tcp", "7701/tcp")
        # The marker: once both have seen it, both have seen everything before it.
        knock_from(user.netns, server, "7600/tcp")
        for d in (k_dir, s_dir):
            wait_for_file(d / f"timed-{user.ipv4}")
        for d in (k_dir, s_dir):  # the stop commands ran after Cmd_Timeout = 1
            deadline = time.monotonic() + 10
            while (d / f"timed-{user.ipv4}").exists() or (d / f"timed6-{user.ipv6}").exists():
                assert time.monotonic() < deadline, sorted(os.listdir(d))
                time.sleep(0.05)
        expected = {
            f"plain-{user.ipv4}",
            f"plain-{user.ipv6}",
            f"flags-{user.ipv4}",
            f"onetime-{user.ipv4}",
            f"onetime-{stranger.ipv4}",
            f"target-{stranger.ipv4}",
        }
        opened = {}
        for d in (k_dir, s_dir):
            opened[d.name] = {f.name for f in d.iterdir()} - {
                "conf",
                "ots",
                "log",
                "stdout",
                "pid",
                "pidfile",
            }
        assert opened["knockd"] == expected
        assert opened["sesame"] == expected
        # Both marked the same one-time lines, the same way.
        assert (
            (k_dir / "ots").read_text()
            == (s_dir / "ots").read_text()
            == ("#7700,7701\n#7710,7711\n 7720,7721\n")
        )
        # Where knockd is wrong: a sequential scan completes an ascending sequence.
        lab.scan(stranger.netns, "7490-7510")
        wait_for_file(k_dir / f"ascending-{stranger.ipv4}")
        knock_from(user.netns, server, "7500/tcp", "7501/tcp", "7502/tcp")
        wait_for_file(s_dir / f"ascending-{user.ipv4}")
        assert not (s_dir / f"ascending-{stranger.ipv4}").exists()
        # knockd's [options] work too: LogFile and its log lines.
        assert "OPEN SESAME" in (k_dir / "log").read_text()
        assert "opened door plain" in (s_dir / "log").read_text()
        assert (s_dir / "pidfile").read_text().strip() == str(daemon.process.pid)
    finally:
        stop(knockd)


def test_sesame_knock_opens_debian_knockd(lab):
    k_dir, _ = setup_dirs(lab)
    knockd = start_knockd(lab, k_dir / "conf")
    try:
        lab.sesame(lab.user.netns, "knock", lab.server.ipv4, "7000", "8000", "9000:udp")
        wait_for_file(k_dir / f"plain-{lab.user.ipv4}")
        lab.sesame(lab.user.netns, "knock", "-d", "50", lab.server.ipv4, "7700", "7701")
        wait_for_file(k_dir / f"onetime-{lab.user.ipv4}")
    finally:
        stop(knockd)


def test_import_knockd_prints_an_equivalent_config(lab):
    _, s_dir = setup_dirs(lab)
    out = subprocess.run(
        [sys.executable, "-m", "sesame", "import", "knockd", str(s_dir / "conf")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    converted = s_dir / "converted.toml"
    converted.write_text(out)
    from sesame import config
    from sesame.compat import knockd

    native = config.load(str(converted))
    compat = knockd.load(str(s_dir / "conf"))
    assert [d.name for d in native.doors] == [d.name for d in compat.doors]
    for a, b in zip(native.doors, compat.doors, strict=True):
        assert (
            a.sequence,
            a.seq_timeout,
            a.tcp_flags,
            a.target,
            a.open_for,
            a.one_time_sequences,
        ) == (b.sequence, b.seq_timeout, b.tcp_flags, b.target, b.open_for, b.one_time_sequences)
    assert native.server.interface == "br0" and native.server.syslog
    assert 'start_command = ["/usr/bin/touch", "' in out  # no shell where none is needed
