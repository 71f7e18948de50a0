"""Answer a TAB without typer: the command tree, cached, read by a small parser.

Importing typer and building sslkit's command takes about 0.3 s, more than a TAB may take.
:func:`command_spec` records, once, what completion needs of the real click command (each
command's subcommands, options with their help, which option takes a value, and how each value
completes: a registered kind, choices, files, nothing). :func:`answer` resolves the words typed so
far against that record the way click's ``shell_complete`` does and prints typer's formats for
bash, zsh and fish. Whatever it is not sure of (``--``, an unknown word, a parameter whose
completion it cannot name, another shell) it leaves to typer: slower, never different.
tests/test_completion.py holds the two answers side by side.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from .completion import NameCompleter, complete_names, load_record, store_record

Spec = dict[str, Any]
SPEC_FILE = "completion-commands.json"
_SHELLS = ("complete_bash", "complete_zsh", "complete_fish")


# ---- the record, made from the click command (slow path, once per cache key) ----


def store_command_tree(command: Any) -> None:
    """Record ``command``'s tree for the next TAB, unless the record is current (the CLI calls
    this whenever typer answers a TAB, including those the quick path leaves to it)."""
    if load_record(SPEC_FILE) is None:
        store_record(SPEC_FILE, command_spec(command))


def command_spec(command: Any) -> Spec:
    """What completion needs of ``command`` (a click command or group), recursively."""
    ctx = command.make_context("sslkit", [], resilient_parsing=True)
    options, arguments = [], []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "option":
            takes = not (param.is_flag or param.count)
            options.append(
                {
                    "opts": [*param.opts, *param.secondary_opts],
                    "help": _helps(param.help),
                    "value": _value_spec(param) if takes else None,
                    "nargs": param.nargs,
                    "multiple": bool(param.multiple),
                }
            )
        else:
            arguments.append({"value": _value_spec(param), "nargs": param.nargs})
    spec: Spec = {"options": options, "arguments": arguments}
    if hasattr(command, "list_commands"):
        spec["commands"] = {}
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                spec["commands"][name] = {"help": _helps(sub.get_short_help_str()), **command_spec(sub)}
    return spec


def _helps(text: str | None) -> dict[str, str]:
    """A help text as typer's zsh and fish completions print it (rich-rendered: slow, so cached)."""
    if not text:
        return {}
    from typer._click.shell_completion import CompletionItem
    from typer._completion_classes import ZshComplete, _sanitize_help_text

    zsh = ZshComplete.format_completion(None, CompletionItem("", help=text))  # type: ignore[arg-type]
    return {"zsh": zsh.split(":", 1)[1][1:-1], "fish": _sanitize_help_text(re.sub(r"\s", " ", text))}


def _value_spec(param: Any) -> Spec:
    """How a parameter's value completes: {"kind"}, {"choices"}, {"files"}, {} or {"unknown"}."""
    custom = getattr(param, "_custom_shell_complete", None)
    if custom is not None:
        found = _find_completer(custom)
        return {"kind": found.kind, "mix": found.mix, "suffix": found.suffix} if found else {"unknown": True}
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return {"unknown": True}
    if desc.is_choice and desc.choices is not None:
        from typer.core import choice_as_str

        return {"choices": [choice_as_str(c) for c in desc.choices], "case_sensitive": bool(desc.case_sensitive)}
    return {"files": True} if desc.is_file else {}


def _find_completer(fn: Any, depth: int = 0) -> NameCompleter | None:
    """The NameCompleter typer's wrappers close over (typer keeps no other reference to it)."""
    if isinstance(fn, NameCompleter):
        return fn
    if depth > 4:
        return None
    wrapped = getattr(fn, "__wrapped__", None)
    found = _find_completer(wrapped, depth + 1) if wrapped is not None else None
    if found:
        return found
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            found = _find_completer(cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            continue
        if found:
            return found
    return None


# ---- the answer (fast path: no typer, no torch) ----


def answer(environ: Mapping[str, str] | None = None) -> str | None:
    """The text typer would print for this TAB, or None to let typer answer it."""
    env = os.environ if environ is None else environ
    mode = env.get("_SSLKIT_COMPLETE", "")
    if mode not in _SHELLS:
        return None
    spec = load_record(SPEC_FILE)
    if not isinstance(spec, dict):
        return None
    args, incomplete = _words(mode, env)
    items = _items(spec, args, incomplete)
    return None if items is None else _format(mode, items, env)


def _words(mode: str, env: Mapping[str, str]) -> tuple[list[str], str]:
    """(the words before the cursor, the word under it), as typer's shell classes read them."""
    if mode == "complete_bash":
        words = split_arg_string(env.get("COMP_WORDS", ""))
        cword = int(env.get("COMP_CWORD", "0") or 0)
        return words[1:cword], words[cword] if cword < len(words) else ""
    line = env.get("_TYPER_COMPLETE_ARGS", "")
    words = split_arg_string(line)[1:]
    if words and not line.endswith(" "):
        return words[:-1], words[-1]
    return words, ""


def split_arg_string(string: str) -> list[str]:
    """click's split_arg_string: shell words, an unclosed quote kept as the last word."""
    lex = shlex.shlex(string, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out: list[str] = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


def _items(root: Spec, args: list[str], incomplete: str) -> list[Item] | None:
    """[(value, help)] for the word under the cursor, or None when typer must decide."""
    state = _walk(root, args)
    if state is None:
        return None
    node, used, awaiting, given = state
    if incomplete.startswith("-"):  # click: an option's name, wherever the cursor is
        if "=" in incomplete:
            return None  # --option=value: rare, typer's
        return _commands(node, incomplete) + _options(node, used, incomplete)
    if awaiting is not None:
        return _values(awaiting["value"], incomplete)
    arguments = node["arguments"]
    if any(a["nargs"] != 1 for a in arguments):
        return None
    if given < len(arguments):
        return _values(arguments[given]["value"], incomplete)
    return _commands(node, incomplete)


def _walk(root: Spec, args: list[str]) -> tuple[Spec, set[int], Spec | None, int] | None:
    """The words before the cursor, read as click's parser reads them: (the command they lead to,
    the options given there, the option still waiting for its value, how many arguments were
    given), or None at anything the record cannot follow."""
    node, used, awaiting, given = root, set[int](), None, 0
    for word in args:
        if awaiting is not None:  # this word is the option's value
            awaiting = None
        elif word == "--":
            return None
        elif word.startswith("-") and len(word) > 1:
            option = _option(node, word.split("=", 1)[0] if word.startswith("--") else word)
            if option is None or (option["value"] is not None and option["nargs"] != 1):
                return None
            used.add(id(option))
            if option["value"] is not None and "=" not in word:
                awaiting = option
        elif "commands" in node:
            if word not in node["commands"]:
                return None
            node, used, given = node["commands"][word], set(), 0
        else:
            given += 1
    return node, used, awaiting, given


def _option(node: Spec, name: str) -> Spec | None:
    return next((o for o in node["options"] if name in o["opts"]), None)


Item = tuple[str, dict[str, str]]  # (value, its help as each shell prints it)


def _commands(node: Spec, incomplete: str) -> list[Item]:
    return [(n, c["help"]) for n, c in node.get("commands", {}).items() if n.startswith(incomplete)]


def _options(node: Spec, used: set[int], incomplete: str) -> list[Item]:
    return [
        (name, o["help"])
        for o in node["options"]
        if o["multiple"] or id(o) not in used
        for name in o["opts"]
        if name.startswith(incomplete)
    ]


def _values(value: Spec, incomplete: str) -> list[Item] | None:
    if value.get("unknown"):
        return None
    if "kind" in value:
        return [(n, {}) for n in complete_names(value["kind"], incomplete, mix=value["mix"], suffix=value["suffix"])]
    if "choices" in value:
        if value["case_sensitive"]:
            return [(c, {}) for c in value["choices"] if c.startswith(incomplete)]
        return [(c, {}) for c in value["choices"] if c.lower().startswith(incomplete.lower())]
    return [(incomplete, {})] if value.get("files") else []


def _format(mode: str, items: list[Item], env: Mapping[str, str]) -> str:
    """typer's BashComplete / ZshComplete / FishComplete output for these items."""
    if mode == "complete_bash":
        return "\n".join(value for value, _ in items)
    if mode == "complete_zsh":
        if not items:
            return "_files"
        lines = [f'"{_zsh(v)}":"{h["zsh"]}"' if h else f'"{_zsh(v)}"' for v, h in items]
        return "_arguments '*: :((" + "\n".join(lines) + "))'"
    lines = [f"{v}\t{h['fish']}" if h else v for v, h in items]
    if env.get("_TYPER_COMPLETE_FISH_ACTION", "") == "is-args":
        sys.exit(0 if lines else 1)  # fish asks whether to offer arguments (else: files)
    return "\n".join(lines) if env.get("_TYPER_COMPLETE_FISH_ACTION", "") == "get-args" else ""


def _zsh(text: str) -> str:
    return text.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")
