"""``cupy.cuda.nccl`` for the stand-in: an ``NcclCommunicator`` that checks its calls the way
NCCL does, then moves the data through MPI (mpi4py) between the processes of an ``mpiexec``
launch (or leaves it, in a world of one).

What it checks, as NCCL would fail (or corrupt memory) otherwise:
- the unique id is 128 bytes, every rank passes the same one, rank 0 made it, ranks lie in
  [0, ndev), and each rank's communicator is made on its own device (NCCL refuses two ranks on
  one GPU: "Duplicate GPU detected");
- every buffer pointer lies inside a live stand-in array on the communicator's device, with
  ``count`` elements of the data type from there on; the data type and op are NCCL's;
- the stream is a stand-in stream; nothing is called after ``abort()``/``destroy()``.

Like NCCL's kernels, a call on a capturing stream is recorded into the CUDA graph and runs at
each of its launches (``calls`` lists what ran).
"""
import ctypes
import types

import numpy as np

from . import array, capture, cuda

# NCCL's own values (nccl.h), as real CuPy exposes them
DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 3: np.uint32, 4: np.int64, 5: np.uint64,
          6: np.float16, 7: np.float32, 8: np.float64}  # (9, bfloat16: NumPy has none)
NAMES = {"NCCL_INT8": 0, "NCCL_CHAR": 0, "NCCL_UINT8": 1, "NCCL_INT32": 2, "NCCL_INT": 2,
         "NCCL_UINT32": 3, "NCCL_INT64": 4, "NCCL_UINT64": 5, "NCCL_FLOAT16": 6,
         "NCCL_HALF": 6, "NCCL_FLOAT32": 7, "NCCL_FLOAT": 7, "NCCL_FLOAT64": 8,
         "NCCL_DOUBLE": 8, "NCCL_SUM": 0, "NCCL_PROD": 1, "NCCL_MAX": 2, "NCCL_MIN": 3,
         "NCCL_AVG": 4}
OPS = {0: "SUM", 1: "PROD", 2: "MAX", 3: "MIN", 4: "AVG"}

calls = []  # (name, count, dtype) of every collective, for tests to assert on
_made = []  # unique ids made here


class NcclError(RuntimeError):
    pass


def get_unique_id():
    """128 bytes, as CuPy 14 gives it (an older CuPy gave a tuple of 128 ints)."""
    uid = np.random.default_rng().integers(0, 256, 128, dtype=np.uint8).tobytes()
    _made.append(uid)
    return uid


def _mpi():
    from mpi4py import MPI

    return MPI


def _host_view(ptr, count, dtype, device, what):
    """The stand-in array memory at ``ptr`` holding ``count`` values of ``dtype``, refused
    unless it lies inside a live array on ``device``."""
    nbytes = count * np.dtype(dtype).itemsize
    for owner in list(array._owners.values()):
        a = owner._a
        start = a.__array_interface__["data"][0]
        if start <= ptr < start + max(a.nbytes, 1):
            if owner._device != device:
                raise NcclError(f"{what}: the buffer lives on device {owner._device}, the "
                                f"communicator on device {device} (invalid argument)")
            if ptr + nbytes > start + a.nbytes:
                raise NcclError(f"{what}: {count} values of {np.dtype(dtype)} from the pointer "
                                f"overrun the array ({a.nbytes} bytes)")
            return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype), owner
    raise NcclError(f"{what}: the pointer {ptr:#x} is no live device array (invalid "
                    "argument)")


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        if not isinstance(commId, bytes):  # (CuPy 14's Cython signature: bytes commId)
            raise TypeError(f"Argument 'commId' has incorrect type (expected bytes, got "
                            f"{type(commId).__name__})")
        if len(commId) != 128:
            raise NcclError("ncclCommInitRank: the unique id must be 128 bytes")
        if not 0 <= rank < ndev:
            raise NcclError(f"ncclCommInitRank: rank {rank} of {ndev} (invalid argument)")
        if rank == 0 and commId not in _made:
            raise NcclError("ncclCommInitRank: rank 0's id was not made by get_unique_id")
        self.ndev, self.rank, self.device = ndev, rank, cuda.getDevice()
        self.alive = True
        if ndev > 1:
            MPI = _mpi()
            world = MPI.COMM_WORLD
            if world.Get_size() != ndev:
                raise NcclError(f"stand-in NCCL: {ndev} ranks need an mpiexec of {ndev}")
            seen = world.allgather((commId, rank, self.device, MPI.Get_processor_name()))
            if len({s[0] for s in seen}) != 1:
                raise NcclError("ncclCommInitRank: the ranks passed different unique ids")
            if sorted(s[1] for s in seen) != list(range(ndev)):
                raise NcclError("ncclCommInitRank: the ranks are not 0..ndev-1 once each")
            places = [(s[3], s[2]) for s in seen]
            if len(set(places)) != len(places):
                raise NcclError("ncclCommInitRank: Duplicate GPU detected (two ranks on one "
                                "device of one machine)")
            self.world = world.Split(0, rank)

    def _check(self, what, dtype, op=None, stream=0):
        if not self.alive:
            raise NcclError(f"{what}: the communicator was aborted or destroyed")
        if dtype not in DTYPES:
            raise NcclError(f"{what}: data type {dtype} is not NCCL's")
        if op is not None and op not in OPS:
            raise NcclError(f"{what}: op {op} is not NCCL's")
        if not isinstance(stream, int):
            raise NcclError(f"{what}: the stream must be a pointer (an int)")
        if cuda.getDevice() != self.device:
            raise NcclError(f"{what}: called with device {cuda.getDevice()} current, the "
                            f"communicator is on device {self.device}")

    def _launch(self, name, count, dtype, run, owners):
        """``run()`` now, or at each launch of the graph the current stream captures."""
        def counted():
            calls.append((name, count, np.dtype(dtype).name))
            run()

        c = capture.launching()
        if c is None:
            counted()
        else:
            capture.record(c, counted, owners)

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        self._check("ncclAllReduce", datatype, op, stream)
        dtype = DTYPES[datatype]
        if OPS[op] == "AVG" and np.dtype(dtype).kind != "f":
            raise NcclError("ncclAllReduce: ncclAvg needs a floating data type")
        send, a = _host_view(sendbuf, count, dtype, self.device, "ncclAllReduce")
        recv, b = _host_view(recvbuf, count, dtype, self.device, "ncclAllReduce")

        def run():
            if self.ndev == 1:
                recv[...] = send
                return
            MPI = _mpi()
            mpi_op = MPI.SUM if OPS[op] == "AVG" else getattr(MPI, OPS[op])
            work = send.astype(np.float32) if dtype == np.float16 else send.copy()
            self.world.Allreduce(MPI.IN_PLACE, work, op=mpi_op)
            if OPS[op] == "AVG":
                work = work / self.ndev
            recv[...] = work.astype(dtype)

        self._launch("allReduce", count, dtype, run, [a, b])

    def bcast(self, buff, count, datatype, root, stream):
        self._check("ncclBcast", datatype, None, stream)
        if not 0 <= root < self.ndev:
            raise NcclError(f"ncclBcast: root {root} of {self.ndev}")
        view, a = _host_view(buff, count, DTYPES[datatype], self.device, "ncclBcast")

        def run():
            if self.ndev > 1:
                self.world.Bcast(view, root=root)

        self._launch("bcast", count, DTYPES[datatype], run, [a])

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        self._check("ncclAllGather", datatype, None, stream)
        dtype = DTYPES[datatype]
        send, a = _host_view(sendbuf, count, dtype, self.device, "ncclAllGather")
        recv, b = _host_view(recvbuf, count * self.ndev, dtype, self.device, "ncclAllGather")

        def run():
            if self.ndev == 1:
                recv[...] = send
            else:
                self.world.Allgather(send.copy(), recv)

        self._launch("allGather", count, dtype, run, [a, b])

    def check_async_error(self):
        if not self.alive:
            raise NcclError("ncclCommGetAsyncError: the communicator was aborted")

    def abort(self):
        self.alive = False

    def destroy(self):
        self.alive = False

    def device_id(self):
        return self.device

    def rank_id(self):
        return self.rank

    def size(self):
        return self.ndev


def module():
    """The ``cupy.cuda.nccl`` module."""
    mod = types.ModuleType("cupy.cuda.nccl")
    mod.__dict__.update(NAMES, available=True, NcclCommunicator=NcclCommunicator,
                        NcclError=NcclError, get_unique_id=get_unique_id,
                        get_version=lambda: 23206, calls=calls)
    return mod
