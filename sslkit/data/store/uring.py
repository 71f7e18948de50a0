"""Many positional reads in one system call, through Linux io_uring (no compiled code: ctypes
for the system calls and the kernel's structures, numpy views over the kernel's shared rings).

Why: a raw CIFAR-sized sample is 3 KB, so reading a batch with one ``os.preadv`` each is
bound by the system-call cost (~2 us an image here), not by copying. io_uring takes a batch
of reads in one ``io_uring_enter``; reads of cached pages complete inside that call.

:class:`BatchReads` is what a store asks for a batch read: it owns the choice between a ring and
``os.preadv`` (``"auto"``: a ring where the system offers one; ``"uring"``: a ring or a one-line
error; ``"pread"``: never a ring) and the ring's life cycle (opened on first use in each process,
replaced after a fork or an interrupted batch, closed with its owner). :class:`ReadRing` is the
ring itself; ``open_ring()`` says why there is none where io_uring cannot be used (not Linux, an
untested architecture, a seccomp profile that forbids it, as Docker's default does).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import sys
from typing import Any, Literal

import numpy as np

from ...errors import ConfigError

Mode = Literal["auto", "uring", "pread"]
MODES = ("auto", "uring", "pread")

# System call numbers of io_uring_setup / io_uring_enter (x86-64's table). Only x86-64 is
# enabled: it is the architecture the tests run on. arm64 shares these numbers (the generic
# table) and the structure layouts below, but a mistake there would not fail loudly (the kernel
# would write into the wrong memory), so other architectures keep the preadv path until tested.
_SETUP, _ENTER = 425, 426
_ARCHES = {"x86_64", "amd64"}
_OP_READ = 22  # IORING_OP_READ (Linux 5.6)
_ENTER_GETEVENTS = 1
_FEAT_SINGLE_MMAP = 1
_OFF_SQ_RING, _OFF_SQES = 0, 0x10000000


# The kernel's structures, field by field as in <linux/io_uring.h>.
class IoSqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("dropped", ctypes.c_uint32),
        ("array", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class IoCqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("overflow", ctypes.c_uint32),
        ("cqes", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class IoUringParams(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", IoSqringOffsets),
        ("cq_off", IoCqringOffsets),
    ]


class IoUringSqe(ctypes.Structure):
    """A submission: the read of ``len`` bytes at ``off`` of ``fd`` into ``addr`` (unions by their read names)."""

    _fields_ = [
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("ioprio", ctypes.c_uint16),
        ("fd", ctypes.c_int32),
        ("off", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("rw_flags", ctypes.c_uint32),
        ("user_data", ctypes.c_uint64),
        ("buf_index", ctypes.c_uint16),
        ("personality", ctypes.c_uint16),
        ("splice_fd_in", ctypes.c_int32),
        ("addr3", ctypes.c_uint64),
        ("pad2", ctypes.c_uint64),
    ]


class IoUringCqe(ctypes.Structure):
    """A completion: ``res`` is the bytes read or minus the errno."""

    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


assert ctypes.sizeof(IoUringParams) == 120 and ctypes.sizeof(IoUringSqe) == 64 and ctypes.sizeof(IoUringCqe) == 16
# numpy views of the shared arrays, built from the structures (same names, same offsets): a batch
# fills its submissions field by field, vectorised, not one ctypes attribute at a time.
_SQE = np.dtype(IoUringSqe)
_CQE = np.dtype(IoUringCqe)


def _syscall() -> Any:
    """libc's syscall(); io_uring_enter's 7 arguments are passed as longs (what syscall() reads)."""
    call = ctypes.CDLL(None, use_errno=True).syscall
    call.restype = ctypes.c_long
    return call


def _enter_call() -> Any:
    call = _syscall()
    call.argtypes = [ctypes.c_long] * 7
    return call


def open_ring(entries: int = 256) -> tuple[ReadRing | None, str]:
    """A ring of ``entries`` slots and "", or None and why this system offers none."""
    if not sys.platform.startswith("linux"):
        return None, f"io_uring is Linux only (this is {sys.platform})"
    if platform.machine().lower() not in _ARCHES:
        return None, f"sslkit's io_uring reader is tested on x86-64 only (this is {platform.machine()})"
    try:
        syscall = _syscall()
    except (OSError, AttributeError) as exc:
        return None, f"no syscall() in the C library ({exc})"
    params = IoUringParams()
    fd = syscall(ctypes.c_long(_SETUP), ctypes.c_long(entries), ctypes.byref(params))
    if fd < 0:  # ENOSYS (old kernel), EPERM (seccomp, io_uring_disabled), ENOMEM (locked-memory limit)
        err = ctypes.get_errno()
        return None, f"io_uring_setup failed ({os.strerror(err)}: an old kernel, or forbidden by seccomp or sysctl)"
    if not params.features & _FEAT_SINGLE_MMAP:  # before Linux 5.4: not worth a second layout
        os.close(fd)
        return None, "the kernel is older than Linux 5.4 (no single-mmap rings)"
    return ReadRing(fd, params, _enter_call()), ""


def _put(ring: np.ndarray, start: int, values: np.ndarray) -> None:
    """``ring[(start + k) % len(ring)] = values[k]``: one slice, or two where the ring wraps."""
    first = min(len(values), len(ring) - start)
    ring[start : start + first] = values[:first]
    ring[: len(values) - first] = values[first:]


def _take(ring: np.ndarray, start: int, n: int) -> np.ndarray:
    """``ring[(start + k) % len(ring)]`` for k < n, as int64: one slice, or two where the ring wraps."""
    first = min(n, len(ring) - start)
    if first == n:
        return ring[start : start + n].astype(np.int64)
    return np.concatenate((ring[start:], ring[: n - first])).astype(np.int64)


class ReadRing:
    """A submission/completion ring for batches of reads into caller-owned memory."""

    def __init__(self, fd: int, params: IoUringParams, syscall: Any) -> None:
        self.fd, self.pid, self._syscall = fd, os.getpid(), syscall
        sq, cq = params.sq_off, params.cq_off
        entries, cq_entries = params.sq_entries, params.cq_entries
        size = max(sq.array + 4 * entries, cq.cqes + _CQE.itemsize * cq_entries)
        rw = mmap.PROT_READ | mmap.PROT_WRITE
        self._rings = mmap.mmap(fd, size, mmap.MAP_SHARED, rw, offset=_OFF_SQ_RING)
        self._sqe_map = mmap.mmap(fd, _SQE.itemsize * entries, mmap.MAP_SHARED, rw, offset=_OFF_SQES)
        words = np.frombuffer(self._rings, dtype="<u4")  # the ring header, 32-bit words
        self._words = words
        self._sq_tail, self._cq_head, self._cq_tail = sq.tail // 4, cq.head // 4, cq.tail // 4
        self._sq_mask, self._cq_mask = int(words[sq.ring_mask // 4]), int(words[cq.ring_mask // 4])
        self._sq_array = words[sq.array // 4 : sq.array // 4 + entries]  # ring slot -> SQE index
        self._sqes = np.frombuffer(self._sqe_map, dtype=_SQE)
        self._sqes[:] = np.zeros(entries, dtype=_SQE)
        self._sqes["opcode"] = _OP_READ
        self._sqes["user_data"] = np.arange(entries)
        cq_bytes = np.frombuffer(self._rings, dtype=np.uint8)[cq.cqes : cq.cqes + _CQE.itemsize * cq_entries]
        self._cqes = cq_bytes.view(_CQE)
        # Field views made once (a batch writes and reads them as slices), and SQE numbers 0..entries-1.
        self._sqe_fields = tuple(self._sqes[name] for name in ("fd", "off", "addr", "len"))
        self._cqe_sqe, self._cqe_res = self._cqes["user_data"], self._cqes["res"]
        self._numbers = np.arange(entries, dtype="<u4")
        self.entries = entries
        self._pending: object = None  # the memory reads are landing in, alive until they have
        self.broken = False

    def close(self) -> None:
        if self.pid == os.getpid() and self.fd >= 0:
            # numpy views of the maps first: a map with views alive cannot close (BufferError)
            self._sqes = self._cqes = self._words = self._sq_array = None  # type: ignore[assignment]
            self._sqe_fields = self._cqe_sqe = self._cqe_res = None  # type: ignore[assignment]
            self._rings.close()
            self._sqe_map.close()
            os.close(self.fd)
        self.fd = -1

    def read(
        self, fds: np.ndarray, offsets: np.ndarray, addresses: np.ndarray, length: int, owner: object
    ) -> np.ndarray:
        """Read ``length`` bytes at ``offsets[i]`` of ``fds[i]`` into ``addresses[i]``, memory of
        ``owner``. Returns each read's result: the bytes read, or minus the errno.

        Raises OSError when the ring itself fails. If anything (a KeyboardInterrupt too) stops a
        batch half-way, the ring is marked ``broken`` and keeps ``owner`` alive for good, since
        reads still in flight land in it: the caller reads with ``os.preadv`` from then on."""
        results = np.empty(len(offsets), dtype=np.int64)
        try:
            for start in range(0, len(offsets), self.entries):
                stop = min(start + self.entries, len(offsets))
                self._pending = owner
                results[start:stop] = self._read_chunk(
                    fds[start:stop], offsets[start:stop], addresses[start:stop], length
                )
                self._pending = None
        except BaseException:
            self.broken = True
            raise
        return results

    def _read_chunk(self, fds: np.ndarray, offsets: np.ndarray, addresses: np.ndarray, length: int) -> np.ndarray:
        n, words = len(offsets), self._words
        tail = int(words[self._sq_tail])
        # SQEs 0..n-1 always, filled as slices (the kernel copied the previous batch's in its
        # io_uring_enter), listed in the ring's next n slots: free, as the ring is empty between batches.
        fd, off, addr, size = self._sqe_fields
        fd[:n], off[:n], addr[:n], size[:n] = fds, offsets, addresses, length
        _put(self._sq_array, tail & self._sq_mask, self._numbers[:n])
        words[self._sq_tail] = (tail + n) & 0xFFFFFFFF  # publish; the kernel reads it in io_uring_enter
        if self._enter(n, n) != n:
            raise OSError(errno.EIO, f"io_uring took fewer than {n} reads")
        head = int(words[self._cq_head])
        while (int(words[self._cq_tail]) - head) & 0xFFFFFFFF < n:  # the wait was cut short by a signal
            self._enter(0, n - ((int(words[self._cq_tail]) - head) & 0xFFFFFFFF))
        first = head & self._cq_mask  # completions [head, head + n), in ring order
        sqe, res = _take(self._cqe_sqe, first, n), _take(self._cqe_res, first, n)
        words[self._cq_head] = (head + n) & 0xFFFFFFFF
        results = np.empty(n, dtype=np.int64)
        results[sqe] = res  # completions come in any order; user_data is the SQE number
        return results

    def _enter(self, submit: int, wait: int) -> int:
        """io_uring_enter: submit ``submit`` reads, wait for ``wait`` completions; EINTR retried
        while nothing was submitted (a submission the kernel took returns its count)."""
        while True:
            got = int(self._syscall(_ENTER, self.fd, submit, wait, _ENTER_GETEVENTS, 0, 0))
            if got >= 0:
                return got
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
            if not submit:
                return 0


class BatchReads:
    """Reads a batch of equal-size blocks, block i at ``offsets[i]`` of ``fds[i]``, into row i of
    a caller's buffer: one io_uring call a batch, or one ``os.preadv`` a block (see module doc).

    Belongs to one object (a store) and pickles without its ring: a DataLoader worker opens its
    own on first use.
    """

    def __init__(self, mode: Mode = "auto") -> None:
        if mode not in MODES:
            raise ConfigError(f"data.batch_reads={mode!r}: use auto, uring or pread")
        self.mode: Mode = mode
        self._ring: ReadRing | None = None
        self._first_read = True  # a kernel without IORING_OP_READ fails the first batch with EINVAL
        self._without_ring = mode == "pread"
        if mode == "uring":
            self._ring_now()  # fails here, in one line, where io_uring is not available

    @property
    def kind(self) -> str:
        """How batches are read in this process: "io_uring" or "preadv"."""
        return "io_uring" if self._ring_now() is not None else "preadv"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ring"] = None  # a ring belongs to the process that opened it
        return state

    def close(self) -> None:
        ring, self._ring = self._ring, None
        if ring is not None and not ring.broken:
            ring.close()

    def _ring_now(self) -> ReadRing | None:
        """This process's ring, opened on first use; None: read with preadv."""
        if self._without_ring:
            return None
        ring = self._ring
        if ring is not None and (ring.pid != os.getpid() or ring.broken):
            self._ring = ring = None  # a forked parent's ring, or one a half-read batch still writes into
        if ring is None:
            ring, why = open_ring()
            if ring is None:
                if self.mode == "uring":
                    raise ConfigError(f"data.batch_reads=uring: {why}; use data.batch_reads=auto or pread")
                self._without_ring = True
            self._ring, self._first_read = ring, True
        return ring

    def read(self, fds: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill row i of ``out`` (uint8 [B, step], C-contiguous) from ``offsets[i]`` of ``fds[i]``;
        returns each read's byte count (minus the errno for a failed read)."""
        step = out.shape[1]
        ring = self._ring_now()
        if ring is not None:
            addresses = out.ctypes.data + step * np.arange(len(out), dtype=np.uint64)
            got = ring.read(fds, offsets, addresses, step, owner=out)
            if self._first_read and len(got) and (got == -errno.EINVAL).all() and self.mode != "uring":
                self.close()  # a kernel without IORING_OP_READ (before 5.6): preadv from now on
                self._without_ring = True
                return self.read(fds, offsets, out)
            self._first_read = False
            return got
        rows = out.data.cast("B")  # the array's own buffer, one byte per element
        got = np.empty(len(out), dtype=np.int64)
        for row, (fd, offset) in enumerate(zip(fds.tolist(), offsets.tolist(), strict=True)):
            got[row] = os.preadv(fd, [rows[row * step : (row + 1) * step]], offset)
        return got
