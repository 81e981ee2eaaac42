"""Bad configs change nothing in the kernel; reloads and restarts keep live grants;
per-door commands run as argv lists."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from sesame.lab import DaemonProcess, knock_from, reachable
from tests.helpers.configs import SECOND_DOOR
from tests.helpers.lab import CONFIG
from tests.helpers.nobody import as_nobody, sesame_argv

OPEN = ("7000/tcp", "8000/tcp", "9000/udp")
GOOD = CONFIG.format(seq_timeout=5, open_for=30)
BAD = [
    (GOOD.replace("open_for = 30", "open_for = 30\nopen_fro = 1"), 9, "unknown key 'open_fro'"),
    (GOOD.replace('"8000/tcp"', '"80000/tcp"'), 5, "out of range"),
    (
        GOOD.replace('sequence = ["7000/tcp", "8000/tcp", "9000/udp"]', "sequence = []"),
        5,
        "sequence is empty",
    ),
    (GOOD + SECOND_DOOR.replace('["5000/udp"]', '["7000/tcp", "8000/tcp"]'), 13, "ambiguous"),
    (GOOD.replace('open = ["22/tcp"]\n', ""), 3, "missing 'open'"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD)
def test_a_bad_config_is_refused_and_nft_is_untouched(lab, text, line, reason):
    lab.serve()  # a running table, with a grant in it
    lab.knock_open()
    lab.daemon.stop()
    before = lab.nft("list", "ruleset")
    path = os.path.join(lab.tmp, "bad.toml")
    with open(path, "w") as handle:
        handle.write(text)
    checked = lab.sesame(lab.server.netns, "check", "-c", path, check=False)
    assert checked.returncode == 2
    assert checked.stderr.startswith(f"{path}:{line}: ") and reason in checked.stderr
    served = lab.sesame(lab.server.netns, "serve", "-c", path, check=False)
    assert served.returncode == 2
    assert served.stderr.strip() == checked.stderr.strip()
    after = lab.nft("list", "ruleset")
    strip = lambda s: "\n".join(x for x in s.splitlines() if "expires" not in x)  # noqa: E731
    assert strip(after) == strip(before)


def test_sighup_refuses_a_bad_config_and_keeps_serving(lab):
    daemon = lab.serve()
    before = lab.nft("list", "chain", "inet", "sesame", "knock")
    with open(os.path.join(lab.tmp, "sesame.toml"), "w") as handle:
        handle.write(BAD[0][0])
    mark = daemon.mark()
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(r"reload refused, the running config stays: .*:9: unknown key", 10, since=mark)
    assert lab.nft("list", "chain", "inet", "sesame", "knock") == before
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for("opened door ssh", 10, since=mark)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)


def test_sighup_reload_keeps_live_grants_and_adds_doors(lab):
    daemon = lab.serve()
    mark = lab.knock_open()
    lab.write_config(GOOD + SECOND_DOOR.replace('["443/tcp"]', '["2222/tcp"]'))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("reloaded .*: 2 doors", 10, since=mark)
    assert list(lab.grants()) == [f"{lab.user.ipv4} 22/tcp"]
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    knock_from(lab.stranger.netns, lab.server.ipv4, "5000/udp")
    daemon.wait_for(rf"opened door web to {lab.stranger.ipv4}: 2222/tcp", 10, since=mark)


def test_restart_adopts_live_grants(lab):
    daemon = lab.serve()
    lab.knock_open()
    assert daemon.stop() == 0
    assert reachable(lab.user.netns, lab.server.ipv4, 22)  # stopping keeps grants
    again = DaemonProcess(lab.server.netns, os.path.join(lab.tmp, "sesame.toml"), "-v").start()
    lab.daemon = again
    again.wait_for(rf"kept grant of door ssh for {lab.user.ipv4}: 22/tcp", 5)
    knock_from(lab.user.netns, lab.server.ipv4, "9000/tcp", "8000/tcp", "7000/tcp")
    again.wait_for(r"closed door ssh for \S+ \(unknock\)", 10)
    assert lab.grants() == {}


def test_a_restart_with_thousands_of_grants_adopts_them_while_serving(lab):
    """More grant elements than a restart adopts at once: the daemon is ready first and
    adopts them while it serves. The user's grant is adopted before the user's un-knock
    is judged (so it closes), an element no door opens any more is deleted, and every
    other one is kept. They were all put in ``grants4``, as a daemon from before grants
    were sharded kept them: those of other shards are moved to their own sets."""
    import subprocess

    from sesame.service.keeper import AT_ONCE

    daemon = lab.serve()
    lab.knock_open()
    assert daemon.stop() == 0
    n = AT_ONCE + 1000
    items = [f'10.0.{i >> 8}.{i & 255} . tcp . 22 timeout 1h comment "ssh"' for i in range(n)]
    items.append('198.51.100.77 . tcp . 2222 timeout 1h comment "gone"')
    subprocess.run(
        ["ip", "netns", "exec", lab.server.netns, "nft", "-f", "-"],
        input=f"add element inet sesame grants4 {{ {', '.join(items)} }}\n",
        text=True,
        check=True,
    )
    again = DaemonProcess(lab.server.netns, os.path.join(lab.tmp, "sesame.toml"), "-v").start()
    lab.daemon = again
    again.wait_for(rf"adopting {n + 2} grant elements from before while serving", 5)
    strays = sum(1 for i in range(n) if i & 3) + 1  # and 198.51.100.77's
    assert any(f"moving {strays} grant elements to their shard's set" in x for x in again.lines)
    knock_from(lab.user.netns, lab.server.ipv4, "9000/tcp", "8000/tcp", "7000/tcp")
    again.wait_for(rf"closed door ssh for {lab.user.ipv4} \(unknock\)", 10)
    again.wait_for(rf"kept {n + 1} grants \(door ssh: {n + 1}\), adopted while serving", 30)
    left = lab.grants()
    assert len(left) == n and f"{lab.user.ipv4} 22/tcp" not in left
    assert "198.51.100.77 2222/tcp" not in left
    for name, present, absent in (
        ("grants4", "10.0.0.4 ", "10.0.0.5 "),
        ("grants4_1", "10.0.0.5 ", "10.0.0.4 "),
    ):
        listed = lab.nft("list", "set", "inet", "sesame", name)
        assert present in listed and absent not in listed


def test_start_and_stop_commands_run_as_argv(lab):
    flag = os.path.join(lab.tmp, "opened")
    name = flag + "-{ip}-{port}-{proto}-{door}"
    text = GOOD.replace(
        "open_for = 30",
        f'open_for = 30\nstart_command = ["/usr/bin/touch", "{name}"]'
        f'\nstop_command = ["/bin/rm", "{name}"]',
    )
    daemon = lab.serve(text)
    expected = f"{flag}-{lab.user.ipv4}-22-tcp-ssh"
    knock_from(lab.user.netns, lab.server.ipv4, *OPEN)
    daemon.wait_for("opened door ssh", 10)
    wait_until(lambda: os.path.exists(expected))
    knock_from(lab.user.netns, lab.server.ipv4, "9000/tcp", "8000/tcp", "7000/tcp")
    daemon.wait_for(r"\(unknock\)", 10)
    wait_until(lambda: not os.path.exists(expected))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


MISSING_INTERFACE = CONFIG.replace("[server]", '[server]\ninterface = "ens9"').format(
    seq_timeout=5, open_for=30
)


def test_an_interface_this_host_lacks_is_refused_by_check_and_warned_by_serve(lab):
    """interface = "ens9" on a host without ens9: check names the host's interfaces
    (--other-host accepts it), serve says at start that knocks are ignored and says again
    when the interface appears, status warns, and import knockd notes knockd's default."""
    path = lab.write_config(MISSING_INTERFACE)
    refused = lab.sesame(lab.server.netns, "check", "-c", path, check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f'{path}:2: interface "ens9" does not exist on this host')
    assert "br0" in refused.stderr and "Traceback" not in refused.stderr
    accepted = lab.sesame(lab.server.netns, "check", "-c", path, "--other-host")
    assert accepted.returncode == 0
    daemon = lab.serve(MISSING_INTERFACE)
    daemon.wait_for(r'interface "ens9" does not exist on this host .*: knocks and SPA', 5)
    status = lab.sesame(lab.server.netns, "status", "-c", path)
    assert 'warning: interface "ens9" does not exist' in status.stderr
    mark = daemon.mark()
    lab.run(lab.server.netns, "ip", "link", "add", "ens9", "type", "bridge")
    daemon.wait_for(r"interface ens9 is here now", 10, since=mark)
    knockd_conf = Path(lab.tmp, "knockd.conf")
    knockd_conf.write_text("[opencloseSSH]\n  sequence = 7000,8000,9000\n  command = /bin/true\n")
    imported = lab.sesame(lab.server.netns, "import", "knockd", str(knockd_conf))
    assert 'interface = "eth0"' in imported.stdout
    assert 'note: interface "eth0" does not exist on this host' in imported.stderr


def test_without_the_right_each_command_says_what_it_needs(lab):
    """As nobody, without CAP_NET_ADMIN: serve, status and revoke say what they need
    (not a bare errno, not "no table" nor "no grant"); a second serve names the process
    that holds the NFLOG group; a file that cannot be read is FILE: reason, no line 0."""
    with tempfile.TemporaryDirectory(prefix="sesame-shared-") as where:
        shared = Path(where)
        shared.chmod(0o755)  # nobody must read the config (it holds no key)
        config = shared / "sesame.toml"
        config.write_text(GOOD.replace("[server]", f'[server]\nstate_dir = "{shared}/state"'))
        config.chmod(0o644)
        for command, *rest in (("serve",), ("status",), ("revoke", "198.51.100.2")):
            argv = (*as_nobody(), *sesame_argv(), command, "-c", str(config), *rest)
            result = lab.run(lab.server.netns, *argv, check=False)
            assert result.returncode == 1, result
            assert "needs root or the capability CAP_NET_ADMIN" in result.stderr
            assert "not installed" not in result.stderr
            assert "no live grant" not in result.stderr
    daemon = lab.serve()
    path = f"{lab.tmp}/sesame.toml"
    second = lab.sesame(lab.server.netns, "serve", "-c", path, check=False)
    assert second.returncode == 1
    holder = f"NFLOG group 5155 is taken by another process (pid {daemon.process.pid}, python"
    assert holder in second.stderr
    missing = lab.sesame(lab.server.netns, "check", "-c", f"{lab.tmp}/none.toml", check=False)
    assert missing.stderr.strip() == f"{lab.tmp}/none.toml: cannot read: No such file or directory"
