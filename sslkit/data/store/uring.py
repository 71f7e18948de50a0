"""Many positional reads in one system call, through Linux io_uring (no compiled code: ctypes
for the three system calls, numpy views over the kernel's shared rings).

Why: a raw CIFAR-sized sample is 3 KB, so reading a batch with one ``os.preadv`` each is
bound by the system-call cost (~2 us an image here), not by copying. io_uring takes a batch
of reads in one ``io_uring_enter``; reads of cached pages complete inside that call.

``ReadRing.open()`` returns None where io_uring cannot be used (not Linux, an architecture
whose numbers are not the generic ones, a seccomp profile that forbids it, as Docker's default
does): the caller then reads with ``os.preadv``. A ring belongs to the process that opened it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import sys

import numpy as np

# System call numbers of io_uring_setup / io_uring_enter: the same on every architecture that
# took the generic table after 5.1 (x86-64 and arm64 among them).
_SETUP, _ENTER = 425, 426
_ARCHES = {"x86_64", "amd64", "aarch64", "arm64"}
_OP_READ = 22  # IORING_OP_READ (Linux 5.6)
_ENTER_GETEVENTS = 1
_FEAT_SINGLE_MMAP = 1
_OFF_SQES = 0x10000000

# struct io_uring_sqe (64 bytes) and struct io_uring_cqe (16 bytes), little-endian.
_SQE = np.dtype(
    [
        ("opcode", "u1"),
        ("flags", "u1"),
        ("ioprio", "<u2"),
        ("fd", "<i4"),
        ("off", "<u8"),
        ("addr", "<u8"),
        ("len", "<u4"),
        ("rw_flags", "<u4"),
        ("user_data", "<u8"),
        ("tail", "<u8", (3,)),
    ]
)
_CQE = np.dtype([("user_data", "<u8"), ("res", "<i4"), ("flags", "<u4")])


class ReadRing:
    """A submission/completion ring for batches of reads into caller-owned memory."""

    def __init__(self, fd: int, params: np.ndarray) -> None:
        self.fd, self.pid = fd, os.getpid()
        entries, cq_entries = int(params[0]), int(params[1])
        sq_off, cq_off = params[10:20], params[20:30]  # struct io_sqring_offsets / io_cqring_offsets
        size = max(int(sq_off[6]) + 4 * entries, int(cq_off[5]) + 16 * cq_entries)
        rw = mmap.PROT_READ | mmap.PROT_WRITE
        self._rings = mmap.mmap(fd, size, mmap.MAP_SHARED, rw, offset=0)
        self._sqe_map = mmap.mmap(fd, 64 * entries, mmap.MAP_SHARED, rw, offset=_OFF_SQES)
        words = np.frombuffer(self._rings, dtype="<u4")
        self._words = words
        self._sq_tail, self._cq_head, self._cq_tail = int(sq_off[1]) // 4, int(cq_off[0]) // 4, int(cq_off[1]) // 4
        self._sq_mask, self._cq_mask = int(words[int(sq_off[2]) // 4]), int(words[int(cq_off[2]) // 4])
        # The submission array maps ring slot i to SQE i, once and for all.
        words[int(sq_off[6]) // 4 : int(sq_off[6]) // 4 + entries] = np.arange(entries, dtype="<u4")
        self._sqes = np.frombuffer(self._sqe_map, dtype=_SQE)
        self._sqes[:] = np.zeros(entries, dtype=_SQE)
        self._sqes["opcode"] = _OP_READ
        self._sqes["user_data"] = np.arange(entries)
        cq_bytes = np.frombuffer(self._rings, dtype=np.uint8)[int(cq_off[5]) : int(cq_off[5]) + 16 * cq_entries]
        self._cqes = cq_bytes.view(_CQE)
        self.entries = entries
        self._pending: object = None  # the memory reads are landing in, alive until they have
        self.broken = False
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long

    @classmethod
    def open(cls, entries: int = 256) -> ReadRing | None:
        """A ring of ``entries`` slots, or None where this system offers no io_uring."""
        if not sys.platform.startswith("linux") or platform.machine().lower() not in _ARCHES:
            return None
        try:
            syscall = ctypes.CDLL(None, use_errno=True).syscall
        except (OSError, AttributeError):
            return None
        syscall.restype = ctypes.c_long
        params = np.zeros(30, dtype="<u4")  # struct io_uring_params, 120 bytes
        fd = syscall(ctypes.c_long(_SETUP), ctypes.c_long(entries), ctypes.c_void_p(params.ctypes.data))
        if fd < 0:  # ENOSYS (old kernel), EPERM (seccomp, io_uring_disabled), ENOMEM (locked-memory limit)
            return None
        if not int(params[5]) & _FEAT_SINGLE_MMAP:  # before Linux 5.4: not worth a second layout
            os.close(fd)
            return None
        return cls(fd, params)

    def close(self) -> None:
        if self.pid == os.getpid() and self.fd >= 0:
            self._sqes = self._cqes = self._words = None  # type: ignore[assignment]
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
        n, words, sqes = len(offsets), self._words, self._sqes
        tail = int(words[self._sq_tail])
        slots = (tail + np.arange(n, dtype=np.int64)) & self._sq_mask  # the ring is empty: n free slots
        sqes["fd"][slots], sqes["off"][slots], sqes["addr"][slots], sqes["len"][slots] = fds, offsets, addresses, length
        words[self._sq_tail] = (tail + n) & 0xFFFFFFFF  # publish; the kernel reads it in io_uring_enter
        if self._enter(n, n) != n:
            raise OSError(errno.EIO, f"io_uring took fewer than {n} reads")
        head = int(words[self._cq_head])
        while (int(words[self._cq_tail]) - head) & 0xFFFFFFFF < n:  # the wait was cut short by a signal
            self._enter(0, n - ((int(words[self._cq_tail]) - head) & 0xFFFFFFFF))
        done = self._cqes[(head + np.arange(n, dtype=np.int64)) & self._cq_mask]
        words[self._cq_head] = (head + n) & 0xFFFFFFFF
        results = np.empty(n, dtype=np.int64)
        results[(done["user_data"].astype(np.int64) - int(slots[0])) & self._sq_mask] = done["res"]  # any order
        return results

    def _enter(self, submit: int, wait: int) -> int:
        """io_uring_enter: submit ``submit`` reads, wait for ``wait`` completions; EINTR retried
        while nothing was submitted (a submission the kernel took returns its count)."""
        while True:
            args = (_ENTER, self.fd, submit, wait, _ENTER_GETEVENTS, 0, 0)  # syscall() reads longs
            got = int(self._syscall(*(ctypes.c_long(a) for a in args)))
            if got >= 0:
                return got
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))
            if not submit:
                return 0
