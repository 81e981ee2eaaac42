"""``sesame lab``: the two-host demo in network namespaces, narrated step by step.

Its parts (the daemon as a process, a TCP echo service, connection probes) are the
same ones the kernel tests use.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from sesame import client
from sesame.basics import parse_port
from sesame.netns import Topology, inside

LAB_CONFIG = """\
[server]

[[door]]
name = "ssh"
sequence = ["7000/tcp", "8000/tcp", "9000/udp"]
seq_timeout = 5
open = ["22/tcp"]
open_for = {open_for}
close_sequence = ["9000/tcp", "8000/tcp", "7000/tcp"]
"""


class DaemonProcess:
    """``sesame serve`` running in a namespace, its log lines kept for waiting on."""

    def __init__(
        self,
        netns: str,
        config_path: str,
        *extra: str,
        source: str = "-c",
        serve: tuple[str, ...] = (),
    ) -> None:
        """``source`` is how serve reads ``config_path``: -c, --knockd-conf or
        --fwknop-access; ``serve`` are more options for serve itself."""
        self.netns = netns
        self.argv = [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-m",
            "sesame",
            *extra,
            "serve",
            source,
            config_path,
            *serve,
        ]
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None

    def start(
        self, ready: bool = True, timeout: float = 20.0, env: dict[str, str] | None = None
    ) -> DaemonProcess:
        """Start it (``env``: more environment variables) and, with ``ready``, wait
        until it says it is ready."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready:
            self.wait_for(r"ready:", timeout)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the log: ``wait_for(..., since=mark)`` looks after it."""
        with self._changed:
            return len(self.lines)

    def wait_for(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """Block until a log line after ``since`` matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    found = regex.search(line)
                    if found:
                        return found
                since = len(self.lines)
                left = deadline - time.monotonic()
                exited = self.process is not None and self.process.poll() is not None
                if left <= 0 or exited:
                    raise TimeoutError(
                        f"no log line matching {pattern!r}"
                        + (" (daemon exited)" if exited else "")
                        + "; log:\n"
                        + "\n".join(self.lines[-30:])
                    )
                self._changed.wait(min(left, 0.5))

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not end in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return self.process.returncode


class EchoServer:
    """A TCP service in a namespace that echoes what it is sent (IPv4 and IPv6)."""

    def __init__(self, netns: str, port: int) -> None:
        with inside(netns):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::", port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def connect(netns: str, address: str, port: int, timeout: float = 1.0) -> socket.socket | None:
    """A connection from ``netns``, or None if nothing answered within ``timeout``.

    A refusal (RST) raises ConnectionRefusedError: a gate must never send one.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with inside(netns):
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except TimeoutError:
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    return sock


def echo(sock: socket.socket, data: bytes = b"ping") -> bool:
    """Does the connection still carry data both ways?"""
    try:
        sock.sendall(data)
        return sock.recv(len(data)) == data
    except OSError:
        return False


def reachable(netns: str, address: str, port: int, timeout: float = 5.0) -> bool:
    """Can ``netns`` open a new connection and exchange data?"""
    sock = connect(netns, address, port, timeout)
    if sock is None:
        return False
    with sock:
        return echo(sock)


def blocked(netns: str, address: str, port: int, timeout: float = 1.0) -> bool:
    """Does a connection attempt from ``netns`` go unanswered (no SYN-ACK, no RST)?"""
    sock = connect(netns, address, port, timeout)
    if sock is None:
        return True
    sock.close()
    return False


def knock_from(netns: str, address: str, *ports: str, delay_ms: int = 0) -> None:
    """Send a knock sequence from inside ``netns`` with sesame's client."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with inside(netns):
        client.knock(family, address, [parse_port(p) for p in ports], delay_ms)


class _Lab:
    """The demo's parts and what it says: steps that failed are remembered."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.daemon: DaemonProcess | None = None
        self.echo_server: EchoServer | None = None
        self.held: socket.socket | None = None
        self.failures: list[str] = []

    def step(self, text: str, ok: bool) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {text}", flush=True)
        if not ok:
            self.failures.append(text)

    @staticmethod
    def say(text: str) -> None:
        print(f"\n{text}", flush=True)

    def show_log(self, since: int) -> None:
        assert self.daemon is not None
        for line in self.daemon.lines[since:]:
            print(f"      | {line.split(': ', 1)[-1]}", flush=True)

    def close(self) -> None:
        """Clean up first, talk after: the terminal may be gone (Ctrl-C, a closed pipe)."""
        if self.held is not None:
            self.held.close()
        if self.echo_server is not None:
            self.echo_server.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.topo.close()


def run(open_for: int = 4) -> int:
    """The narrated demo. Returns 0 when every step showed what it should."""
    if os.geteuid() != 0:
        print("sesame lab needs root (network namespaces and nftables)", file=sys.stderr)
        return 1
    lab = _Lab(Topology(tag=f"lab{os.getpid()}"))
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with tempfile.TemporaryDirectory(prefix="sesame-lab-") as tmp:
            _set_up(lab, tmp, open_for)
            _scenes(lab, open_for)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        lab.failures.append("interrupted")
    except Exception as exc:
        print(f"\nlab failed: {exc}", file=sys.stderr)
        lab.failures.append(str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
        lab.close()
        with contextlib.suppress(OSError):
            lab.say("Cleaned up: sesame stopped, the namespaces removed")
    if lab.failures:
        print(f"\n{len(lab.failures)} step(s) failed", file=sys.stderr)
        return 1
    print("\nEvery step behaved as it should.")
    return 0


def _set_up(lab: _Lab, tmp: str, open_for: int) -> None:
    """The namespaces, the config, the echo service and the daemon."""
    lab.say("Building the lab: a server, a user and a stranger in network namespaces")
    topo = lab.topo
    topo.build()
    for role in ("server", "user", "stranger"):
        host = topo[role]
        print(f"  {role:<8} {host.ipv4:<14} {host.ipv6:<13} (netns {host.netns})")
    path = os.path.join(tmp, "sesame.toml")
    with open(path, "w") as handle:
        handle.write(LAB_CONFIG.format(open_for=open_for))
    print(f"\nThe config ({path}):\n" + LAB_CONFIG.format(open_for=open_for))
    lab.echo_server = EchoServer(topo["server"].netns, 22)
    lab.say("Starting the echo service on 22/tcp and `sesame serve` in the server")
    lab.daemon = DaemonProcess(topo["server"].netns, path).start()
    lab.show_log(0)


def _scenes(lab: _Lab, open_for: int) -> None:
    """Blocked, knock, open to the user only, a connection outliving the window,
    expiry, un-knock."""
    daemon, step, say = lab.daemon, lab.step, lab.say
    assert daemon is not None
    user, stranger = lab.topo["user"].netns, lab.topo["stranger"].netns
    target = lab.topo["server"].ipv4

    say("Before any knock, nobody can reach port 22 (no answer at all)")
    step("user is blocked", blocked(user, target, 22))
    step("stranger is blocked", blocked(stranger, target, 22))

    say("The user knocks: 7000/tcp 8000/tcp 9000/udp")
    mark = daemon.mark()
    knock_from(user, target, "7000/tcp", "8000/tcp", "9000/udp")
    found = daemon.wait_for(r"opened door ssh to (\S+):", 5, since=mark)
    lab.show_log(mark)
    step(f"sesame opened 22/tcp to {found.group(1)} for {open_for}s", True)
    step("user connects and is echoed", reachable(user, target, 22))
    step("stranger is still blocked", blocked(stranger, target, 22))

    say(f"The user keeps a connection open past the {open_for}s window")
    held = lab.held = connect(user, target, 22)
    step("connection established inside the window", held is not None and echo(held))
    mark = daemon.mark()
    daemon.wait_for(r"closed door ssh for \S+ \(expired\)", open_for + 5, since=mark)
    lab.show_log(mark)
    step("the grant expired", True)
    step("the established connection still works", held is not None and echo(held))
    step("a new connection from the user is blocked again", blocked(user, target, 22))

    say("The user knocks again, then un-knocks: 9000/tcp 8000/tcp 7000/tcp")
    mark = daemon.mark()
    knock_from(user, target, "7000/tcp", "8000/tcp", "9000/udp")
    daemon.wait_for(r"opened door ssh", 5, since=mark)
    step("open again", reachable(user, target, 22))
    knock_from(user, target, "9000/tcp", "8000/tcp", "7000/tcp")
    daemon.wait_for(r"closed door ssh for \S+ \(unknock\)", 5, since=mark)
    lab.show_log(mark)
    step("the un-knock closed the door before its time", blocked(user, target, 22))
