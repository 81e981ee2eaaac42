"""The store (Redis or Valkey), spoken to by two threads so that the packet loop never
waits for it: the writer makes claims, tells entries and beats this node's heart;
the reader follows the stream of entries. What they learn comes back as events
(:class:`Claimed`, :class:`Heard`, :class:`Changed`, :class:`Forgotten`), and the
loop is woken through :meth:`Store.fileno`.

In the store, under the cluster's ``name``:

- ``NAME:seen:MAC``: a replay claim, ``SET NX PX`` for as long as the message could
  still be accepted (the value is the node that claimed it);
- ``NAME:entries``: the stream of entries (``e``: body, ``m``: its MAC), trimmed to
  about 100,000;
- ``NAME:live``: the same entries in a sorted set scored by their deadline (ms), from
  which a node that starts or reconnects reads what is still live;
- ``NAME:node:NODE``: each node's heartbeat, what it holds (for ``sesame status
  --cluster``), expiring unless renewed;
- ``NAME:epoch``: a random value set once; if it changes, the store lost what it
  held (a restart without persistence, a flush), and with it the claims: the daemon
  then refuses every message stamped before (see :mod:`sesame.engine.cluster`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sesame.cluster.settings import Cluster
from sesame.engine.cluster import Outcome

log = logging.getLogger("sesame")
BEAT = 2.0  # seconds between heartbeats (and probes while the store is down)
BACKOFF = (0.25, 8.0)  # reconnection back-off, least and most seconds
BATCH = 512  # claims and entries in one round trip (whole jobs: about)
STREAM_LEN = 100_000
UNTOLD = 10_000  # entries kept while the store is down, to tell when it is back
TIMEOUT = 1.0  # seconds a command may take before the store counts as down


# One round trip of the writer, run by the store (EVALSHA): everything a batch needs,
# without a command and its reply each (which cost the daemon's thread more than the
# claims themselves). KEYS: the epoch, the stream, the live set, this node's
# heartbeat, then one claim each. ARGV: a new epoch, the node, the number of claims and
# their lifetimes (ms); the epoch the node knows ('' at first), the heartbeat's
# lifetime (0: no beat), what it says, now (ms), the stream's length; then body, MAC,
# deadline (ms) of each entry: first one for each claim (added only if the claim was
# made, and the store has not lost what it held since: an empty body for none), then
# the rest. Returns the epoch, then 1 (claimed) or 0 (taken) for each claim.
ROUND = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local out = {epoch}
local claims = tonumber(ARGV[3])
local made = {}
for i = 1, claims do
  made[i] = redis.call('SET', KEYS[4 + i], ARGV[2], 'NX', 'PX', ARGV[3 + i])
  out[#out + 1] = made[i] and 1 or 0
end
local at = 4 + claims
local same = ARGV[at] == '' or ARGV[at] == epoch
local beat = tonumber(ARGV[at + 1])
if beat > 0 then
  redis.call('SET', KEYS[4], ARGV[at + 2], 'PX', beat)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[at + 3])
end
for j = at + 5, #ARGV, 3 do
  local i = (j - at - 5) / 3 + 1
  if ARGV[j] ~= '' and (i > claims or (made[i] and same)) then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[at + 4], '*',
               'e', ARGV[j], 'm', ARGV[j + 1], 'n', ARGV[2])
    redis.call('ZADD', KEYS[3], ARGV[j + 2], ARGV[j + 1] .. ' ' .. ARGV[j])
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """The claim ``token`` ended so."""

    token: int
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Heard:
    """An entry read from the store; ``live``: from the list of live grants (read on
    connecting), not the stream."""

    body: bytes
    mac: bytes
    live: bool = False


@dataclass(frozen=True, slots=True)
class Changed:
    """The store answers again (``up``), or no longer, and why."""

    up: bool
    why: str = ""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """The store lost what it held: claims made before cannot be trusted."""


Event = Claimed | Heard | Changed | Forgotten


Told = tuple[bytes, bytes, float]  # an entry: body, MAC, deadline (Unix time)


@dataclass(frozen=True, slots=True)
class _Claim:
    token: int
    key: str
    ttl_ms: int
    entry: Told | None = None


@dataclass(frozen=True, slots=True)
class _Tell:
    body: bytes
    mac: bytes
    until: float  # Unix time


def connect(cluster: Cluster, timeout: float) -> object:
    """A client of the store (its password from password_file), one connection."""
    import redis  # only a cluster needs it
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        cluster.store,
        password=cluster.password,
        socket_timeout=timeout,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
        client_name=f"sesame-{cluster.node}",
        driver_info=None,  # no CLIENT SETINFO: the ACL README recommends does not allow it
        protocol=2,  # RESP2: every Redis and Valkey speaks it, and no notifications to log
    )


class Store(Protocol):
    """What a node needs of its store (:class:`RedisStore`, and the fake
    :class:`sesame.cluster.memory.MemoryStore`; :func:`sesame.testing.check_store`
    holds both to these promises). Nothing here blocks: answers come as events."""

    snapshot: bytes  # what this node's heartbeat says, renewed by the daemon

    def start(self) -> None:
        """Connect; :class:`Changed` (up) follows, then every live entry as
        :class:`Heard` (``live``), then what the stream brings."""

    def fileno(self) -> int:
        """Readable when :meth:`take` has events."""

    def claim(self, token: int, key: str, ttl_ms: int, entry: Told | None = None) -> None:
        """Claim ``key`` for ``ttl_ms`` unless someone holds it: :class:`Claimed`
        follows, ``claimed`` for the first claim of a key, ``taken`` for the rest,
        ``failed`` if the store did not answer, ``forgotten`` if it lost what it held.
        ``entry`` is told (as :meth:`tell`) in the same step, if and only if the claim
        is ``claimed``."""

    def tell(self, body: bytes, mac: bytes, until: float) -> None:
        """An entry for every node (this one too), until ``until`` (Unix time); kept
        and told when the store answers again."""

    def send(self) -> None:
        """Hand the store what :meth:`claim` and :meth:`tell` gathered since the last
        send, in their order: nothing goes before (a batch of packets is one step)."""

    def take(self) -> list[Event]:
        """The events since last asked, in order."""

    def close(self) -> None:
        """Stop; what is not told is lost."""


class RedisStore:
    """The store, for one node. ``make(cluster, timeout)`` makes a client."""

    def __init__(self, cluster: Cluster, make: Callable[[Cluster, float], object] = connect):
        self.cluster, self._make = cluster, make
        prefix = cluster.name
        self.keys = {
            "stream": f"{prefix}:entries",
            "live": f"{prefix}:live",
            "epoch": f"{prefix}:epoch",
            "node": f"{prefix}:node:{cluster.node}",
        }
        self.snapshot = b"{}"  # what the heartbeat says; the loop replaces it
        # A batch's claims and entries go to the writer as one job: a job per claim
        # woke the writer thread for each, and the two threads took turns at the GIL.
        self._held: list[_Claim | _Tell] = []
        self._jobs: queue.SimpleQueue[list[_Claim | _Tell] | None] = queue.SimpleQueue()
        self._events: deque[Event] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, name="sesame-store-writer", daemon=True),
            threading.Thread(target=self._read, name="sesame-store-reader", daemon=True),
        ]
        self._epoch: bytes | None = None
        self._script: Any = None
        self._untold: deque[_Tell] = deque(maxlen=UNTOLD)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def fileno(self) -> int:
        return self._wake_r.fileno()

    def claim(self, token: int, key: str, ttl_ms: int, entry: Told | None = None) -> None:
        """Claim ``key`` for ``ttl_ms``; :class:`Claimed` follows. ``entry`` goes to
        the stream in the same round trip if the claim is made."""
        self._held.append(_Claim(token, key, max(1, ttl_ms), entry))

    def tell(self, body: bytes, mac: bytes, until: float) -> None:
        """Tell the other nodes an entry (kept and told later if the store is down)."""
        self._held.append(_Tell(body, mac, until))

    def send(self) -> None:
        if self._held:
            self._jobs.put(self._held)
            self._held = []

    def take(self) -> list[Event]:
        """What happened since last asked."""
        drain(self._wake_r)
        taken: list[Event] = []
        while self._events:
            taken.append(self._events.popleft())
        return taken

    def close(self) -> None:
        self._closing.set()
        self._jobs.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(TIMEOUT + BEAT)
        self._wake_r.close()
        self._wake_w.close()

    def _report(self, *events: Event) -> None:
        self._events.extend(events)
        with contextlib.suppress(OSError):  # full: an earlier byte wakes it; or closing
            self._wake_w.send(b"\0")

    # -- the writer --------------------------------------------------------------------

    def _write(self) -> None:
        client: object | None = None
        up: bool | None = None
        retry_at, backoff, beat_at = 0.0, BACKOFF[0], 0.0
        while not self._closing.is_set():
            due = retry_at if up is False else beat_at  # down: the next try; up: the beat
            batch = self._batch(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            if up is False and now < retry_at:
                self._fail(batch)
                continue
            try:
                client = client or self._make(self.cluster, TIMEOUT)
                self._run(client, batch, beat=now >= beat_at)
            except Exception as exc:
                why = _why(exc)
                _drop(client)
                client = None
                self._fail(batch)
                retry_at, backoff = now + backoff, min(backoff * 2, BACKOFF[1])
                if up is not False:
                    up = False
                    self._report(Changed(False, why))
                continue
            if now >= beat_at:
                beat_at = now + BEAT
            if up is not True:
                up, backoff, retry_at = True, BACKOFF[0], 0.0
                self._report(Changed(True))
        _drop(client)

    def _batch(self, wait: float) -> list[_Claim | _Tell]:
        batch: list[_Claim | _Tell] = []
        try:
            job = self._jobs.get(timeout=wait) if wait > 0 else self._jobs.get_nowait()
        except queue.Empty:
            return batch
        while job is not None:
            batch += job
            if len(batch) >= BATCH:
                break
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
        return batch

    def _run(self, client: object, batch: list[_Claim | _Tell], beat: bool) -> None:
        """One round trip, one script (:data:`ROUND`): the epoch, the claims, the
        entries, the heartbeat."""
        wall = time.time()
        tells = [t for t in (*self._untold, *batch) if isinstance(t, _Tell) and t.until > wall]
        claims = [j for j in batch if isinstance(j, _Claim)]
        keys = [self.keys[k] for k in ("epoch", "stream", "live", "node")]
        args: list[bytes | str | int] = [os.urandom(16).hex(), self.cluster.node, len(claims)]
        for claim in claims:
            keys.append(claim.key)
            args.append(claim.ttl_ms)
        beat_ms = int(3 * BEAT * 1000) if beat else 0
        args += [self._epoch or b"", beat_ms, self.snapshot if beat else b"", int(wall * 1000)]
        args.append(STREAM_LEN)
        for body, mac, until in [c.entry or (b"", b"", 0.0) for c in claims]:
            args += [body, mac, int(until * 1000)]
        for tell in tells:
            args += [tell.body, tell.mac, int(tell.until * 1000)]
        if self._script is None:
            self._script = client.register_script(ROUND)  # type: ignore[attr-defined]
        answers = self._script(keys=keys, args=args, client=client)
        self._untold.clear()
        epoch = answers[0]
        forgotten = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        events: list[Event] = [Forgotten()] if forgotten else []
        for claim, made in zip(claims, answers[1:], strict=False):
            outcome: Outcome = "forgotten" if forgotten else "claimed" if made else "taken"
            events.append(Claimed(claim.token, outcome))
        if events:
            self._report(*events)

    def _fail(self, batch: list[_Claim | _Tell]) -> None:
        """The store did not take ``batch``: its claims fail; its entries wait."""
        self._untold.extend(j for j in batch if isinstance(j, _Tell))
        failed = [Claimed(j.token, "failed") for j in batch if isinstance(j, _Claim)]
        if failed:
            self._report(*failed)

    # -- the reader --------------------------------------------------------------------

    def _read(self) -> None:
        backoff, me = BACKOFF[0], self.cluster.node.encode()
        while not self._closing.is_set():
            client = None
            try:
                client = self._make(self.cluster, TIMEOUT + BEAT)
                newest = client.xrevrange(self.keys["stream"], count=1)  # type: ignore[attr-defined]
                last = newest[0][0] if newest else b"0-0"
                now_ms = int(time.time() * 1000)
                live = client.zrangebyscore(self.keys["live"], now_ms, "+inf")  # type: ignore[attr-defined]
                self._report(*(_heard(member, True) for member in live))
                log.info(
                    "cluster store %s: following its entries (%d live read)",
                    self.cluster.where,
                    len(live),
                )
                backoff = BACKOFF[0]
                while not self._closing.is_set():
                    got = client.xread(  # type: ignore[attr-defined]
                        {self.keys["stream"]: last}, count=BATCH, block=int(BEAT * 500)
                    )
                    heard: list[Event] = []
                    for _, items in got or ():
                        for ident, fields in items:
                            last = ident
                            if fields.get(b"n") == me:  # this node's own (a hint: whoever
                                continue  # writes it can only make this node skip an entry)
                            heard.append(Heard(fields.get(b"e", b""), fields.get(b"m", b"")))
                    if heard:
                        self._report(*heard)
            except Exception:
                _drop(client)
                self._closing.wait(backoff)
                backoff = min(backoff * 2, BEAT)  # back within a heartbeat of the store


def nodes(cluster: Cluster) -> list[dict[str, Any]]:
    """What each node's heartbeat says (nodes whose heart stopped have none)."""
    client: Any = connect(cluster, TIMEOUT)
    try:
        found = []
        for key in sorted(client.scan_iter(match=f"{cluster.name}:node:*", count=100)):
            try:
                found.append(json.loads(client.get(key) or b"{}"))
            except ValueError:
                continue  # not a node's: whoever can write to the store wrote it
        return [n for n in found if isinstance(n, dict) and "node" in n]
    finally:
        _drop(client)


def drain(wake: socket.socket) -> None:
    """Read a wake-up socket empty (it is non-blocking)."""
    with contextlib.suppress(BlockingIOError):
        while wake.recv(4096):
            pass


def _heard(member: bytes, live: bool) -> Heard:
    mac, _, body = member.partition(b" ")
    return Heard(body, mac, live)


def _drop(client: object | None) -> None:
    """Close a client (a broken connection may fail to close: no matter)."""
    if client is not None:
        with contextlib.suppress(Exception):
            client.close()  # type: ignore[attr-defined]


def _why(exc: BaseException) -> str:
    """A short reason, without anything the store's URL or password could put in it."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{name}: {text}" if text else name
