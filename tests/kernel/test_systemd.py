"""Under a real systemd: Debian 12 booted with systemd-nspawn in the lab's server
namespace, the package installed in it, sesame run by its unit."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from sesame.lab import blocked, knock_from, reachable
from tests.helpers.lab import require
from tests.helpers.nspawn import booted
from tests.helpers.spa import ALICE, CLIENT_CONFIG

CONFIG = f"""\
[server]

[[user]]
name = "alice"
key = "{ALICE}"
doors = ["admin"]

[[door]]
name = "ssh"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
open = ["22/tcp"]
open_for = 30

[[door]]
name = "admin"
spa_port = 62201
open = ["22/tcp"]
open_for = 30
"""


def test_the_unit_gates_before_it_is_active_reloads_visibly_and_stops_closed(lab):
    require("systemd-nspawn")
    require("debootstrap")
    subprocess.run(["bash", "scripts/build-deb.sh"], check=True, capture_output=True)
    [deb] = glob.glob("dist/sesame_*_all.deb")
    share = tempfile.mkdtemp(prefix="sesame-machine-")
    try:
        shutil.copy(deb, share)
        with open(os.path.join(share, "sesame.toml"), "w") as handle:
            handle.write(CONFIG)
        with booted(lab.server.netns, f"{share}:/mnt/share") as machine:
            machine.run("sh", "-c", "dpkg -i /mnt/share/sesame_*_all.deb")
            assert (
                machine.run("systemctl", "is-enabled", "sesame", check=False).stdout.strip()
                == "disabled"
            )
            machine.run(
                "install",
                "-m",
                "640",
                "-g",
                "sesame",
                "/mnt/share/sesame.toml",
                "/etc/sesame/sesame.toml",
            )
            machine.run("systemctl", "start", "sesame")  # returns once sesame said READY
            assert "chain guard" in machine.run("nft", "list", "table", "inet", "sesame").stdout
            assert machine.run("systemctl", "is-active", "sesame").stdout.strip() == "active"
            shown = machine.run("systemctl", "show", "sesame", "-p", "User", "-p", "Type").stdout
            assert "User=sesame" in shown and "Type=notify" in shown

            server = lab.server.ipv4
            assert blocked(lab.user.netns, server, 22)
            knock_from(lab.user.netns, server, "7000/tcp", "8000/tcp", "9000/udp")
            assert reachable(lab.user.netns, server, 22)
            client = os.path.join(share, "client.toml")
            with open(client, "w") as handle:
                handle.write(CLIENT_CONFIG.format(host=server, user="alice", key=ALICE))
            os.chmod(client, 0o600)
            lab.sesame(
                lab.stranger.netns, "knock", "home", "--door", "admin", "--client-config", client
            )
            assert reachable(lab.stranger.netns, server, 22)  # alice's key, from there
            status = machine.run("sesame", "status").stdout
            assert lab.user.ipv4 in status and lab.stranger.ipv4 in status
            journal = machine.run("journalctl", "-u", "sesame", "-o", "verbose").stdout
            assert "SESAME_EVENT=opened" in journal  # the audit trail's fields, as fields
            assert f"SESAME_ADDRESS={lab.user.ipv4}" in journal

            machine.run("sh", "-c", "echo 'bogus = 1' >> /etc/sesame/sesame.toml")
            reload = machine.run("systemctl", "reload", "sesame", check=False)
            assert reload.returncode != 0
            assert machine.run("systemctl", "is-active", "sesame").stdout.strip() == "active"

            machine.run("sesame", "revoke", lab.stranger.ipv4)
            assert blocked(lab.stranger.netns, server, 22)
            machine.run("systemctl", "stop", "sesame")
            assert "chain guard" in machine.run("nft", "list", "table", "inet", "sesame").stdout
            knock_from(lab.stranger.netns, server, "7000/tcp", "8000/tcp", "9000/udp")
            assert blocked(lab.stranger.netns, server, 22)  # stopped: closed, nothing opens
    finally:
        shutil.rmtree(share)
