"""The Debian package: built with Debian's tools, installed with apt, the installed
sesame serving as its own user, removed (the table stays: fail closed) and purged
(sesame is gone, its table too). Maintainer scripts run inside the lab's server
namespace, so what they do to a firewall happens there."""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from sesame.lab import DaemonProcess, knock_from
from tests.helpers.lab import require
from tests.helpers.spa import ALICE, BOB, SERVER_CONFIG, client_config

PLAIN = '\n[[door]]\nname = "plain"\nsequence = ["7000/tcp", "8000/tcp"]\nopen = ["2222/tcp"]\n'


def run(*argv: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=env, check=True)


def test_the_package_installs_serves_removes_and_purges(lab):
    require("dpkg-deb")
    if (
        os.path.exists("/usr/bin/sesame")
        and "sesame" not in run("dpkg", "-S", "/usr/bin/sesame").stdout
    ):
        pytest.skip("a /usr/bin/sesame that is not this package's is installed here")
    run("bash", "scripts/build-deb.sh")
    [deb] = glob.glob("dist/sesame_*_all.deb")
    ns = lab.server.netns
    run("apt-get", "install", "-y", "-q", f"./{deb}", netns=ns)
    try:
        assert run("/usr/bin/sesame", "--version").stdout.startswith("sesame ")
        assert "COMMANDS" in run("man", "-P", "cat", "8", "sesame").stdout
        assert "public" in run("man", "-P", "cat", "5", "sesame.toml").stdout
        user = pwd.getpwnam("sesame")
        config = os.stat("/etc/sesame/sesame.toml")
        assert (config.st_uid, config.st_gid) == (0, grp.getgrnam("sesame").gr_gid)
        assert stat.S_IMODE(config.st_mode) == 0o640
        state = os.stat("/var/lib/sesame")
        assert state.st_uid == user.pw_uid and stat.S_IMODE(state.st_mode) == 0o700
        assert os.path.exists("/lib/systemd/system/sesame.service")
        assert not glob.glob("/etc/systemd/system/*.wants/sesame.service")  # not enabled

        # The installed sesame as its user with CAP_NET_ADMIN alone, as its unit runs it:
        # a plain knock, an SPA (recorded in /var/lib/sesame), a one-time sequence, a
        # reload.
        home = tempfile.mkdtemp(prefix="sesame-package-")  # the user may enter it
        os.chmod(home, 0o755)
        config_path = os.path.join(home, "installed.toml")
        text = SERVER_CONFIG.format(tmp="/var/lib", alice=ALICE, bob=BOB, open_for=30)
        text = text.replace("/var/lib/state", "/var/lib/sesame") + PLAIN
        with open(config_path, "w") as handle:
            handle.write(text)
        os.chown(config_path, 0, grp.getgrnam("sesame").gr_gid)
        os.chmod(config_path, 0o640)
        daemon = DaemonProcess(ns, config_path)
        daemon.argv[4:7] = [
            "setpriv", "--reuid=sesame", "--regid=sesame", "--init-groups",
            "--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin",
            "--bounding-set=-all,+net_admin", "/usr/bin/sesame",
        ]  # fmt: skip
        lab.daemon = daemon.start()
        mark = daemon.mark()
        user_ip = lab.user.ipv4
        knock_from(lab.user.netns, lab.server.ipv4, "7000/tcp", "8000/tcp")
        daemon.wait_for(rf"opened door plain to {user_ip}", 10, since=mark)
        client = client_config(lab)
        lab.sesame(lab.user.netns, "knock", "home", "--door", "ssh", "--client-config", client)
        daemon.wait_for(rf"opened door ssh to {user_ip}: 22/tcp \(user alice\)", 10, since=mark)
        lab.sesame(lab.user.netns, "knock", "home", "--door", "phone", "--client-config", client)
        daemon.wait_for(rf"opened door phone to {user_ip}: 22/tcp \(user alice\)", 10, since=mark)
        record = os.stat("/var/lib/sesame/replay")
        assert record.st_uid == user.pw_uid and record.st_size > 0
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(r"reloaded .*: 3 doors, 2 users", 10, since=mark)
        daemon.stop()
        shutil.rmtree(home)

        run("apt-get", "remove", "-y", "-q", "sesame", netns=ns)
        assert not os.path.exists("/usr/bin/sesame")
        assert os.path.exists("/etc/sesame/sesame.toml")  # a conffile stays until purged
        assert "chain guard" in run("nft", "list", "table", "inet", "sesame", netns=ns).stdout
    finally:
        run("apt-get", "purge", "-y", "-q", "sesame", netns=ns)
    assert not os.path.exists("/etc/sesame/sesame.toml")
    assert not os.path.exists("/var/lib/sesame")
    listed = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True
    )
    assert "inet sesame" not in listed.stdout  # purged: the table is gone
