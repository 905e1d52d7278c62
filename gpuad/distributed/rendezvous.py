"""The torchrun-style rendezvous: rank 0 serves small values (NCCL's unique id) at
``MASTER_ADDR:MASTER_PORT``, and the other ranks fetch them, over the standard library's
``multiprocessing.connection`` (authenticated with ``GPUAD_RENDEZVOUS_KEY``, or torchrun's run
id). It carries no tensors: the collectives themselves are NCCL's or MPI's.
"""
from __future__ import annotations

import os
import threading
import time
from multiprocessing.connection import Client, Listener
from typing import Any

from ..errors import DistributedError, DistributedTimeoutError


def _authkey() -> bytes:
    key = os.environ.get("GPUAD_RENDEZVOUS_KEY") or os.environ.get("TORCHELASTIC_RUN_ID")
    return ("gpuad:" + (key or "default")).encode()


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
            except (OSError, EOFError):
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
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                with Client(self.address, authkey=_authkey()) as conn:
                    conn.send(key)
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if conn.poll(left):
                        return conn.recv()
            except (ConnectionRefusedError, FileNotFoundError, EOFError):
                time.sleep(0.05)
            if deadline is not None and time.monotonic() > deadline:
                raise DistributedTimeoutError(
                    f"gpuad.distributed: rank {self.rank} got no {key!r} from the rendezvous "
                    f"at {self.address[0]}:{self.address[1]} within timeout={self.timeout:g} "
                    "s: is rank 0 running, with the same MASTER_ADDR and MASTER_PORT?")

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
