"""The daemon as a user of its own, with CAP_NET_ADMIN alone: started as root with
``--user``, or by another program (setpriv here, systemd on a real host)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile

import pytest

from sesame.lab import DaemonProcess, knock_from, reachable
from tests.helpers.nobody import sesame_argv
from tests.helpers.spa import ALICE, BOB, SERVER_CONFIG, client_config

PLAIN = """
[[door]]
name = "plain"
sequence = ["7000/tcp", "8000/tcp"]
open = ["2222/tcp"]
"""
SETPRIV = [
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--init-groups",
    "--inh-caps=-all,+net_admin",
    "--ambient-caps=-all,+net_admin",
    "--bounding-set=-all,+net_admin",
]


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


@pytest.mark.parametrize("how", ["--user", "setpriv"])
def test_as_nobody_with_cap_net_admin_a_knock_an_spa_and_a_one_time_sequence_open(lab, how):
    nobody = pwd.getpwnam("nobody")
    home = tempfile.mkdtemp(prefix="sesame-user-")  # reachable by nobody, unlike tmp_path
    try:
        os.chmod(home, 0o755)
        os.mkdir(f"{home}/state", 0o700)
        os.chown(f"{home}/state", nobody.pw_uid, nobody.pw_gid)
        path = f"{home}/sesame.toml"
        with open(path, "w") as handle:
            handle.write(SERVER_CONFIG.format(tmp=home, alice=ALICE, bob=BOB, open_for=30) + PLAIN)
        os.chown(path, 0, nobody.pw_gid)  # root:nogroup 0640, as root:sesame is installed
        os.chmod(path, 0o640)
        daemon = DaemonProcess(lab.server.netns, path, "-v")
        if how == "--user":
            daemon.argv += ["--user", "nobody"]
        else:
            daemon.argv[4:7] = [*SETPRIV, *sesame_argv()]  # python -m sesame, nobody's
        lab.daemon = daemon.start()
        assert daemon.process is not None
        seen = status(daemon.process.pid)
        assert seen["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert int(seen["CapEff"], 16) == int(seen["CapBnd"], 16) == 1 << 12  # CAP_NET_ADMIN
        server, user = lab.server.ipv4, lab.user.ipv4

        mark = daemon.mark()
        knock_from(lab.user.netns, server, "7000/tcp", "8000/tcp")
        daemon.wait_for(rf"opened door plain to {user}: 2222/tcp", 10, since=mark)
        cfg = client_config(lab)
        lab.sesame(lab.user.netns, "knock", "home", "--door", "ssh", "--client-config", cfg)
        daemon.wait_for(rf"opened door ssh to {user}: 22/tcp \(user alice\)", 10, since=mark)
        assert reachable(lab.user.netns, server, 22)
        lab.sesame(lab.user.netns, "knock", "home", "--door", "phone", "--client-config", cfg)
        daemon.wait_for(rf"opened door phone to {user}: 22/tcp \(user alice\)", 10, since=mark)
        record = f"{home}/state/replay"
        assert os.stat(record).st_uid == nobody.pw_uid and os.path.getsize(record) > 0

        daemon.signal(signal.SIGHUP)
        daemon.wait_for(r"reloaded .*: 3 doors, 2 users", 10, since=mark)
    finally:
        if lab.daemon is not None:
            lab.daemon.stop()
        shutil.rmtree(home)


def test_a_state_dir_the_user_cannot_write_is_refused_with_the_fix(lab):
    home = tempfile.mkdtemp(prefix="sesame-user-")
    try:
        os.chmod(home, 0o755)
        os.mkdir(f"{home}/state", 0o700)  # root's
        path = f"{home}/sesame.toml"
        with open(path, "w") as handle:
            handle.write(SERVER_CONFIG.format(tmp=home, alice=ALICE, bob=BOB, open_for=30))
        os.chmod(path, 0o640)
        os.chown(path, 0, pwd.getpwnam("nobody").pw_gid)
        checked = lab.sesame(lab.server.netns, "check", "-c", path, "--user", "nobody", check=False)
        assert checked.returncode == 2
        assert f"{path}:2: state_dir: {home}/state is root:root, mode 0700," in checked.stderr
        assert "sesame runs as user nobody (uid 65534): chown it to that user" in checked.stderr
        served = lab.sesame(lab.server.netns, "serve", "-c", path, "--user", "nobody", check=False)
        assert served.returncode == 1
        assert (
            f"sesame: {home}/state cannot be used: Permission denied: sesame runs as"
            in served.stderr
        )
    finally:
        shutil.rmtree(home)
