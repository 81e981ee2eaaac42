"""An SPA server and its users, for kernel tests."""

from __future__ import annotations

import os
import socket

from sesame.crypto import encode_key
from sesame.netns import inside

ALICE = encode_key(bytes(range(32)))


BOB = encode_key(bytes(range(1, 33)))


SERVER_CONFIG = """\
[server]
state_dir = "{tmp}/state"

[[user]]
name = "alice"
key = "{alice}"
doors = ["ssh", "phone"]

[[user]]
name = "bob"
key = "{bob}"
doors = ["ssh"]
allow_other_address = true

[[door]]
name = "ssh"
spa_port = 62201
open = ["22/tcp"]
open_for = {open_for}
one_address_per_user = true

[[door]]
name = "phone"
sequence_from = "totp"
port_range = [40000, 40999]
seq_timeout = 10
open = ["22/tcp"]
open_for = {open_for}
"""


CLIENT_CONFIG = """\
[[server]]
name = "home"
host = "{host}"
user = "{user}"
key = "{key}"
spa_port = 62201

[server.doors.phone]
port_range = [40000, 40999]
sequence_length = 4
"""


def serve(lab, open_for=30):
    return lab.serve(SERVER_CONFIG.format(tmp=lab.tmp, alice=ALICE, bob=BOB, open_for=open_for))


def send(netns: str, address: str, payload: bytes, port: int = 62201) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with inside(netns):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    with sock:
        sock.sendto(payload, (address, port))


def client_config(lab, user="alice", key=ALICE, host=None, mode=0o600) -> str:
    path = os.path.join(lab.tmp, f"client-{user}-{mode:o}.toml")
    with open(path, "w") as handle:
        handle.write(CLIENT_CONFIG.format(host=host or lab.server.ipv4, user=user, key=key))
    os.chmod(path, mode)
    return path
