"""The one atomic writer and the one output lock (sslkit.files)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from sslkit.files import OutputBusyError, OutputLock, atomic_write


def test_atomic_write_gives_the_umask_mode_even_to_private_temporary_files(tmp_path):
    def private(tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # as safetensors' and tempfile's writers do
        os.write(fd, b"x")
        os.close(fd)

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.bin", private)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_lock_refuses_a_second_writer_and_leaves_no_file(tmp_path):
    out = tmp_path / "run"
    with OutputLock(out, "run"):
        assert (out / ".lock").read_text().strip() == str(os.getpid())
        busy = rf"'{out}' is in use by another sslkit run \(PID {os.getpid()}\)"
        with pytest.raises(OutputBusyError, match=busy), OutputLock(out, "run"):
            pass
    assert not (out / ".lock").exists()
    with OutputLock(out, "run"):  # free again
        pass


def test_file_lock_sits_beside_the_file(tmp_path):
    out = tmp_path / "sub" / "e.npy"
    with OutputLock(out, "embedding", folder=False) as lock:
        assert lock.path == tmp_path / "sub" / ".e.npy.lock"
        assert lock.path.is_file()
        with pytest.raises(OutputBusyError, match="another sslkit embedding"):
            OutputLock(out, "embedding", folder=False).__enter__()
    assert list((tmp_path / "sub").iterdir()) == []


def test_waiting_writer_gets_the_lock_after_the_holder_removes_its_file(tmp_path):
    out = tmp_path / "store"
    order: list[str] = []
    holder = OutputLock(out, "pack").__enter__()

    def second() -> None:
        with OutputLock(out, "pack", wait=True):
            order.append("second")

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    order.append("first done")
    holder.__exit__(None, None, None)
    t.join(10)
    assert order == ["first done", "second"]
    assert not (out / ".lock").exists()


def test_lock_dies_with_a_killed_holder(tmp_path):
    out = tmp_path / "run"
    code = (
        f"from sslkit.files import OutputLock; OutputLock({str(out)!r}, 'run').__enter__(); "
        "print('held', flush=True); import time; time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    p.kill()
    p.wait()
    with OutputLock(out, "run"):  # the stale file does not block
        pass


def test_a_file_in_place_of_the_folder_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="is a file, not a folder"):
        OutputLock(tmp_path / "f", "run").__enter__()
