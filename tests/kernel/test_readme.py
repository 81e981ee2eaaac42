"""README's walkthrough, "From nothing to ssh through SPA", run as it is written: the
server's commands in the lab's server namespace, the client's in the user's, each line
as a shell would run it. Three things are replaced, so the test leaves this machine as
it was: the example address (the lab's server), /etc/sesame and /var/lib/sesame (a
temporary directory); and ssh, at the end, by a connection to the lab's service on
port 22."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from sesame.lab import DaemonProcess, blocked, reachable

README = Path(__file__).parent.parent.parent / "README.md"


def walkthrough() -> tuple[list[str], list[str]]:
    """The server's and the client's commands, line by line."""
    text = README.read_text()
    section = text.split("## From nothing to ssh through SPA", 1)[1].split("\n## ", 1)[0]
    server, client = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return server.strip().splitlines(), client.strip().splitlines()


def test_from_nothing_to_ssh_through_spa_as_written(lab):
    server_lines, client_lines = walkthrough()
    etc, state = Path(lab.tmp, "etc-sesame"), Path(lab.tmp, "var-lib-sesame")
    home = Path(lab.tmp, "home")
    home.mkdir()

    def local(line: str) -> str:
        line = line.replace("/etc/sesame", str(etc)).replace("/var/lib/sesame", str(state))
        return line.replace("203.0.113.5", lab.server.ipv4)

    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    shell = ("env", f"PATH={path}", f"HOME={home}", "bash", "-ec")
    serve = local(server_lines[-1])
    assert serve.startswith("sesame serve ") and serve.endswith(" &")
    for line in server_lines[:-1]:
        lab.run(lab.server.netns, *shell, f"cd {lab.tmp} && {local(line)}")
    config = serve.removeprefix("sesame serve -c ").removesuffix(" &")
    daemon = lab.daemon = DaemonProcess(
        lab.server.netns, config, serve=("--state-dir", str(state))
    ).start()
    assert blocked(lab.user.netns, lab.server.ipv4, 22)
    (home / "alice.toml").write_text(Path(lab.tmp, "alice.toml").read_text())  # the copy
    *setup, last = client_lines
    knock, _, ssh = last.partition(" && ")
    assert ssh.startswith("ssh alice@")
    mark = daemon.mark()
    for line in [*setup, knock]:
        lab.run(lab.user.netns, *shell, f"cd {home} && {local(line)}")
    daemon.wait_for(rf"opened door ssh to {lab.user.ipv4}: 22/tcp \(user alice\)", 10, since=mark)
    assert reachable(lab.user.netns, lab.server.ipv4, 22)
    assert blocked(lab.stranger.netns, lab.server.ipv4, 22)
    assert oct(etc.joinpath("sesame.toml").stat().st_mode & 0o777) == "0o640"
