"""The ``sslkit`` command line: a thin layer over the Python API.

Errors the user can fix (:class:`sslkit.errors.SSLKitError`, and a file system that refuses a
write: permissions, a read-only or full disk, a file where a folder should be) print one line and
exit 2; any other exception is a bug and keeps its traceback. Heavy modules (torch) are imported
inside commands, so ``sslkit --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import TYPE_CHECKING, Any

from ..errors import SSLKitError

if TYPE_CHECKING:
    import typer


# errno -> (what happened, how to fix it) for the OSErrors that are the user's to fix.
_FS_ERRORS = {
    errno.EACCES: ("permission denied", "choose a folder you can write to (--out) or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to (--out) or fix its permissions"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk with --out"),
    errno.ENOSPC: ("no space left on the disk", "free some space or choose a folder on another disk with --out"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or choose a folder on another disk with --out"),
    errno.EFBIG: (
        "the file is larger than allowed (ulimit -f)",
        "raise the file size limit or free space; the previous files are intact",
    ),
    errno.EEXIST: ("a file is in the way of a folder", "remove it or choose another --out"),
    errno.ENOTDIR: ("part of the path is a file, not a folder", "choose another --out"),
    errno.EISDIR: ("it is a folder, not a file", "give a file name"),
}
# What torch.save says when the disk fills mid-write (its C++ writer has no errno or path).
_TORCH_WRITE_FAILURES = ("basic_ios::clear", "unexpected pos", "file write failed", "PytorchStreamWriter failed")


def user_os_error(exc: BaseException) -> str | None:
    """One line for an OSError the user can fix (or torch's full-disk RuntimeError), else None."""
    if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
        exc = exc.__context__  # torch.save to a file object wraps the file's own error
    if isinstance(exc, OSError) and exc.errno in _FS_ERRORS:
        what, fix = _FS_ERRORS[exc.errno]
        where = f" '{exc.filename}'" if exc.filename else ""
        return f"cannot write{where}: {what}; {fix}"
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_WRITE_FAILURES):
        return (
            "writing a checkpoint or weights file failed (the disk is full or a file size limit was hit); "
            "free some space or choose a folder on another disk with --out"
        )
    return None


def build_app() -> typer.Typer:
    """The typer app (cli/app.py), imported here only when a command runs: a TAB needs none."""
    from .app import build_app as build

    return build()


def build_command() -> Any:
    """The click command ``sslkit`` runs: the typer app, with readable help (cli/command.py)."""
    from .command import command_of

    return command_of(build_app())


def optional_resume_value(args: list[str]) -> list[str]:
    """Spell `--resume` and `--resume auto` as `--resume=yes` and `--resume=auto`.

    typer has no option whose value may be left out (click's `flag_value` is not passed through),
    so the one option of that shape is given its value here, before parsing.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--":
            return out + args[i:]
        if args[i] == "--resume":
            takes_next = i + 1 < len(args) and args[i + 1] == "auto"
            out.append("--resume=auto" if takes_next else "--resume=yes")
            i += 2 if takes_next else 1
            continue
        out.append(args[i])
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Usage errors are typer's (exit 2); errors the user can fix are one line, exit 2."""
    if "_SSLKIT_COMPLETE" in os.environ:  # a TAB: answered from the cached command tree if it can be
        _quick_completion()
    import typer

    command = build_command()
    if "_SSLKIT_COMPLETE" in os.environ:  # typer answers this TAB; the next one need not wait for it
        _store_command_tree(command)
    args = optional_resume_value(list(sys.argv[1:] if argv is None else argv))
    try:
        code = command.main(args=args, prog_name="sslkit", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: one line, like every other error
        if type(exc).__name__ == "NoArgsIsHelpError":  # `sslkit` alone: its help, as click does
            typer.echo(exc.format_message(), err=True)
        else:
            typer.echo(f"error: {usage_line(exc)}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except SSLKitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (OSError, RuntimeError) as exc:
        line = user_os_error(exc)
        if line is None:
            raise  # a bug: keep the traceback
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _quick_completion() -> None:
    """Print the TAB's answer and exit, without typer, when cli/quick_complete.py is sure of it."""
    from .quick_complete import answer

    try:
        text = answer()
    except Exception:  # the quick path is an optimisation: on any surprise, typer answers
        return
    if text is not None:
        sys.stdout.write(text + "\n")
        sys.exit(0)


def _store_command_tree(command: Any) -> None:
    from .quick_complete import store_command_tree

    with contextlib.suppress(Exception):  # an optimisation: never in the way of the answer
        store_command_tree(command)


def usage_line(exc: typer.TyperException) -> str:
    """click's message, on one line, with where to read the command's options."""
    message = " ".join(getattr(exc, "format_message", exc.__str__)().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message
