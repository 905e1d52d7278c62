"""The torchrun-style rendezvous: rank 0 serves small values (NCCL's unique id) at
``MASTER_ADDR``, on the port :func:`rendezvous_port` says, and the other ranks fetch them, over
the standard library's ``multiprocessing.connection`` (authenticated with
``GPUAD_RENDEZVOUS_KEY``, or torchrun's run id: not a security boundary on an untrusted
network). It carries no tensors: the collectives themselves are NCCL's or MPI's.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from typing import Any

from ..errors import DistributedError, DistributedTimeoutError


def _authkey() -> bytes:
    key = os.environ.get("GPUAD_RENDEZVOUS_KEY") or os.environ.get("TORCHELASTIC_RUN_ID")
    return ("gpuad:" + (key or "default")).encode()


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


class Rendezvous:
    """Rank 0's values, served to ``world_size - 1`` fetches per key for as long as the group
    lives; ``exchange(key, value)`` gives every rank rank 0's ``value``."""

    def __init__(self, rank: int, world_size: int, addr: str | None, port: int | None,
                 timeout: float | None) -> None:
        if addr is None or port is None:
            raise DistributedError(
                "gpuad.distributed: a torchrun-style launch needs MASTER_ADDR and MASTER_PORT "
                "(where rank 0 serves the rendezvous); set both, e.g. MASTER_ADDR=127.0.0.1 "
                "MASTER_PORT=29500")
        self.rank, self.world_size = rank, world_size
        self.address, self.timeout = (addr, port), timeout
        self.values: dict[str, bytes] = {}
        self.ready = threading.Condition()
        self.listener: Listener | None = None
        if rank == 0:
            try:
                self.listener = Listener((addr, port), authkey=_authkey())
            except OSError as exc:
                raise DistributedError(f"gpuad.distributed: rank 0 cannot serve the "
                                       f"rendezvous at {addr}:{port} ({exc}); choose a free "
                                       "MASTER_PORT") from None
            threading.Thread(target=self._serve, daemon=True,
                             name="gpuad-rendezvous").start()

    def _serve(self) -> None:
        assert self.listener is not None
        while True:
            try:
                conn = self.listener.accept()
            except (AuthenticationError, EOFError, ConnectionError):
                continue  # (a client with another key, or one that left: serve the next)
            except OSError:
                return  # (closed)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: Any) -> None:
        with conn:
            key = conn.recv()
            with self.ready:
                self.ready.wait_for(lambda: key in self.values)
                value = self.values[key]
            conn.send(value)

    def exchange(self, key: str, value: bytes | None) -> bytes:
        """Rank 0's ``value`` for ``key`` (rank 0 passes it, the others pass None)."""
        if self.rank == 0:
            assert value is not None
            with self.ready:
                self.values[key] = value
                self.ready.notify_all()
            return value
        result: list[Any] = []  # (the value, or the error to raise here)
        done, stop = threading.Event(), threading.Event()
        threading.Thread(target=self._fetch, args=(key, result, done, stop), daemon=True,
                         name="gpuad-rendezvous-fetch").start()
        # (the fetch runs in a thread: a handshake with a server that is not gpuad's can block
        # without end, and the deadline must hold all the same)
        if not done.wait(self.timeout):
            stop.set()  # (the fetch stops trying; one blocked in a handshake stays, a daemon)
            raise DistributedTimeoutError(
                f"gpuad.distributed: rank {self.rank} got no {key!r} from the rendezvous at "
                f"{self.address[0]}:{self.address[1]} within timeout={self.timeout:g} s: is "
                "rank 0 running, with the same MASTER_ADDR and MASTER_PORT (and nothing else "
                "listening there)?")
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]

    def _fetch(self, key: str, result: list[Any], done: threading.Event,
               stop: threading.Event) -> None:
        """Ask rank 0 for ``key`` until it answers (connection refused: not serving yet), or
        until ``stop`` is set."""
        while not stop.is_set():
            try:
                with Client(self.address, authkey=_authkey()) as conn:
                    conn.send(key)
                    result.append(conn.recv())
                    break
            except (ConnectionRefusedError, FileNotFoundError, EOFError):
                time.sleep(0.05)
            except (AuthenticationError, OSError) as exc:
                result.append(DistributedError(
                    f"gpuad.distributed: rank {self.rank} reached {self.address[0]}:"
                    f"{self.address[1]}, but not gpuad's rendezvous ({exc!r}): another "
                    "program listens there (torchrun's own store does, unless "
                    "TORCHELASTIC_USE_AGENT_STORE is off: see rendezvous_port), or the ranks "
                    "have different GPUAD_RENDEZVOUS_KEY values"))
                break
        done.set()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
