"""fwknop's keys and an access.conf served by sesame, for kernel and interop tests."""

from __future__ import annotations

from pathlib import Path

from sesame.lab import DaemonProcess

KEY = "JCsc4AAN+Z1Bwh95MQjaahA7mUXm29Ld8RKN86e8M20="


HMAC = "NbsbbnGqb8yPXhLGdrC7PjwpLHB4X8rm8nRG5vQnWOGuHpIs1vYJ0mrXXBYx7AzuFAo1lBOxjapUZ+43xLH9SA=="


ACCESS = f"""\
SOURCE              ANY
OPEN_PORTS          tcp/22
KEY_BASE64          {KEY}
HMAC_KEY_BASE64     {HMAC}
FW_ACCESS_TIMEOUT   30
MAX_FW_TIMEOUT      60
REQUIRE_USERNAME    alice
"""


def private(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def serve_access(lab, text: str = ACCESS) -> DaemonProcess:
    access = private(Path(lab.tmp, "access.conf"), text)
    daemon = DaemonProcess(
        lab.server.netns,
        access,
        "-v",
        source="--fwknop-access",
        serve=("--state-dir", f"{lab.tmp}/state"),
    ).start()
    lab.daemon = daemon
    return daemon


def debian_fwknop(lab, *args: str) -> None:
    """Debian's fwknop client in the user's namespace, asking for the user's address."""
    from tests.helpers.lab import require

    client = require("fwknop")
    argv = ("--no-rc-file", "--no-save-args", "-D", lab.server.ipv4, "-a", lab.user.ipv4)
    lab.run(lab.user.netns, client, *argv, *args)
