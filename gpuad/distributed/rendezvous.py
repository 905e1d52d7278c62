"""The torchrun-style rendezvous: rank 0 serves small values (NCCL's unique id) on the port
:func:`rendezvous_port` says, on every interface, and the other ranks fetch them from
``MASTER_ADDR``, over plain TCP (the standard library's ``socket``). Each answer carries an
HMAC-SHA256 of the value under ``GPUAD_RENDEZVOUS_KEY`` (or torchrun's run id), so a rank tells
gpuad's rendezvous from another program listening there and from another run; it is not a
security boundary on an untrusted network (the value travels in clear). It carries no tensors:
the collectives themselves are NCCL's or MPI's.

Protocol: the client sends the key's name and a newline; the server answers, once the value is
published, with 4 bytes of length (big-endian), the value, and its 32-byte HMAC. Each
connection is served in its own thread under a deadline, so a client that never speaks holds
up nobody. Keys carry the process's group count, so a group made again after
``destroy_process_group()`` never takes the previous group's value.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import socket
import threading
import time
from collections.abc import Mapping

from ..errors import DistributedError, DistributedTimeoutError

#: seconds a served connection may take to send its key
ANSWER_DEADLINE = 30.0


def _authkey() -> bytes:
    key = os.environ.get("GPUAD_RENDEZVOUS_KEY") or os.environ.get("TORCHELASTIC_RUN_ID")
    return ("gpuad:" + (key or "default")).encode()


def _mac(value: bytes) -> bytes:
    return hmac.new(_authkey(), value, hashlib.sha256).digest()


def rendezvous_port(port: int, env: Mapping[str, str]) -> int:
    """Where rank 0 serves: ``GPUAD_RENDEZVOUS_PORT`` if set; ``MASTER_PORT + 1`` under
    torchrun itself, whose agent already serves its own store at ``MASTER_PORT``
    (``TORCHELASTIC_USE_AGENT_STORE=True``); else ``MASTER_PORT``.

    >>> ad.distributed.rendezvous.rendezvous_port(29500, {"TORCHELASTIC_USE_AGENT_STORE": "True"})
    29501
    """
    if "GPUAD_RENDEZVOUS_PORT" in env:
        text = env["GPUAD_RENDEZVOUS_PORT"]
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ValueError(f"gpuad.distributed: GPUAD_RENDEZVOUS_PORT={text!r} is not a TCP "
                             "port (1 to 65535)")
        return int(text)
    return port + 1 if env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true" else port


def _receive(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection closed early")
        data += chunk
    return data


class Rendezvous:
    """Rank 0's values, served for as long as the group lives; ``exchange(key, value)`` gives
    every rank rank 0's ``value``."""

    def __init__(self, rank: int, world_size: int, addr: str | None, port: int | None,
                 timeout: float | None, generation: int = 0) -> None:
        if addr is None or port is None:
            raise DistributedError(
                "gpuad.distributed: a torchrun-style launch needs MASTER_ADDR and MASTER_PORT "
                "(where rank 0 serves the rendezvous); set both, e.g. MASTER_ADDR=127.0.0.1 "
                "MASTER_PORT=29500")
        self.rank, self.world_size, self.generation = rank, world_size, generation
        self.address, self.timeout = (addr, port), timeout
        self.values: dict[str, bytes] = {}
        self.ready = threading.Condition()
        self.server: socket.socket | None = None
        if rank == 0:
            try:
                self.server = socket.create_server(("", port), reuse_port=False)
            except OSError as exc:
                raise DistributedError(f"gpuad.distributed: rank 0 cannot serve the "
                                       f"rendezvous on port {port} ({exc}); choose a free "
                                       "MASTER_PORT (or GPUAD_RENDEZVOUS_PORT)") from None
            threading.Thread(target=self._serve, args=(self.server,), daemon=True,
                             name="gpuad-rendezvous").start()

    def _key(self, key: str) -> str:
        return f"{key}#{self.generation}"

    def _serve(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # (closed)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(ANSWER_DEADLINE)
                request = b""
                while not request.endswith(b"\n") and len(request) < 256:
                    chunk = conn.recv(256)
                    if not chunk:
                        return
                    request += chunk
                key = request.strip().decode(errors="replace")
                with self.ready:
                    if not self.ready.wait_for(lambda: key in self.values or
                                               self.server is None, self.timeout):
                        return
                    value = self.values.get(key)
                if value is not None:
                    conn.sendall(len(value).to_bytes(4, "big") + value + _mac(value))
        except Exception:  # noqa: BLE001  (any client's misstep ends its connection only)
            return

    def exchange(self, key: str, value: bytes | None) -> bytes:
        """Rank 0's ``value`` for ``key`` (rank 0 passes it, the others pass None)."""
        key = self._key(key)
        if self.rank == 0:
            assert value is not None
            with self.ready:
                self.values[key] = value
                self.ready.notify_all()
            return value
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise DistributedTimeoutError(
                    f"gpuad.distributed: rank {self.rank} got no {key!r} from the rendezvous "
                    f"at {self.address[0]}:{self.address[1]} within timeout="
                    f"{self.timeout:g} s: is rank 0 running, with the same MASTER_ADDR and "
                    "MASTER_PORT (and nothing else listening there)?")
            try:
                return self._fetch(key, left)
            except OSError:  # (refused: rank 0 not serving yet; a timeout: the deadline
                time.sleep(0.05)  # decides)

    def _fetch(self, key: str, left: float | None) -> bytes:
        with socket.create_connection(self.address, timeout=left) as conn:
            conn.sendall(key.encode() + b"\n")
            size = int.from_bytes(_receive(conn, 4), "big")
            if size > 1 << 20:
                raise self._foreign("an answer of implausible length")
            value, mac = _receive(conn, size), _receive(conn, 32)
        if not hmac.compare_digest(mac, _mac(value)):
            raise self._foreign("an answer without this run's signature")
        return value

    def _foreign(self, what: str) -> DistributedError:
        return DistributedError(
            f"gpuad.distributed: rank {self.rank} reached {self.address[0]}:"
            f"{self.address[1]}, but got {what}: another program listens there (torchrun's "
            "own store does at MASTER_PORT: see rendezvous_port), or the ranks have different "
            "GPUAD_RENDEZVOUS_KEY values")

    def close(self) -> None:
        """Stop serving: the port is free again, and waiting connections end."""
        server, self.server = self.server, None
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            server.close()
            with self.ready:
                self.ready.notify_all()
