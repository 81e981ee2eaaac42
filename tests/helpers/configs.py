"""Configs several test modules share."""

from __future__ import annotations

from sesame.crypto import encode_key

EXAMPLE = """\
[server]
# interface = "eth0"    # optional: only knocks arriving on this interface count

[[door]]
name = "ssh"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5          # seconds from first to last knock
open = ["22/tcp"]        # opened to the knocker's address only
open_for = 30            # seconds; connections established inside the window outlive it
close_sequence = ["9000/tcp", "8000/tcp", "7000/tcp"]   # optional un-knock
"""


SECOND_DOOR = '\n[[door]]\nname = "web"\nsequence = ["5000/udp"]\nopen = ["443/tcp"]\n'


KEY = encode_key(bytes(range(32)))


SERVER = f"""\
[server]
state_dir = "/tmp/sesame-test-state"

[[user]]
name = "alice"
key = "{KEY}"
doors = ["ssh"]

[[door]]
name = "ssh"
spa_port = 62201
open = ["22/tcp"]
open_for = 30
"""
