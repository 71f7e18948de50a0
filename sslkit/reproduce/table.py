"""A reproduction's table: the papers' claims checked on our numbers (:func:`findings`) and the
page ``reproduce.md`` rendered from ``reproduce.json`` (:func:`to_markdown`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import MIX


def _arm_claims(rows: list[dict[str, Any]], ours: dict[str, float]) -> list[dict[str, Any]]:
    """Doersch & Zisserman, ICCV 2017, sec. 5: the mix of tasks beats each of its tasks alone, on
    every probe row that both trunks have."""
    checks = []
    for r in rows:
        arm = r.get("arm")
        if not arm or MIX not in arm:
            continue
        rest = r["row"][len(arm) + 1 :]
        probe, layer = rest.rsplit("/", 1)
        for part in (p for p in arm.split(MIX) if p):
            other = ours.get(f"{part}/{rest}")
            if other is not None:
                checks.append(
                    {
                        "claim": f"the mix {arm} beats {part} alone ({probe} probe, {layer})",
                        "holds": r["ours"] > other,
                        "margin": round(r["ours"] - other, 2),
                    }
                )
    return checks


def findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The papers' qualitative claims, checked on our numbers: pretext features beat random-init
    features (every probe row that has a random-init twin; each trunk of a recipe with several),
    block2 beats the last block on the non-linear probe (RotNet's Table 1), and a mix of tasks
    beats each of its tasks alone."""
    ours = {r["row"]: r["ours"] for r in rows}
    checks = []
    for r in rows:
        row, arm = r["row"], r.get("arm")
        rest = row[len(arm) + 1 :] if arm else row
        b = ours.get(f"random/{rest}")
        if row.startswith("random/") or b is None:
            continue
        probe, layer = rest.rsplit("/", 1)
        checks.append(
            {
                "claim": f"{arm or 'pretext'} features beat random-init features ({probe} probe, {layer})",
                "holds": r["ours"] > b,
                "margin": round(r["ours"] - b, 2),
            }
        )
    blocks = sorted((k for k in ours if k.startswith("mlp/block")), key=lambda k: int(k.rsplit("block", 1)[1]))
    if len(blocks) >= 3:
        last = blocks[-1]
        checks.append(
            {
                "claim": f"block2 beats the last block ({last.split('/')[1]}) on the non-linear probe",
                "holds": ours["mlp/block2"] > ours[last],
                "margin": round(ours["mlp/block2"] - ours[last], 2),
            }
        )
    return checks + _arm_claims(rows, ours)


def data_label(data: str) -> str:
    """A registered dataset's name, or a folder's last two parts (``.../cifar10-20k/train``): the
    page shows what the data was, not where it lay on the machine that ran it."""
    if "/" not in data and "\\" not in data:
        return data
    parts = Path(data).parts
    return "a folder of images, `.../" + "/".join(parts[-2:]) + "`"


def _accuracies(heldout: dict[str, float]) -> str:
    return ", ".join(f"{task} {100 * acc:.1f}%" for task, acc in heldout.items()) or "n/a"


def _pretext_lines(table: dict[str, Any]) -> list[str]:
    """The pretext run's line, or one line per run of a recipe with several."""
    if not table.get("arms"):
        return [
            f"Pretext: `{table['task']}` on {data_label(table['data'])}, {table['pretext_epochs']} epochs, "
            "held-out pretext accuracy "
            + (f"{100 * table['pretext_heldout_acc']:.1f}%" if table["pretext_heldout_acc"] is not None else "n/a")
            + f" ({table['pretext_seconds']:.0f} s). Total {table['total_seconds']:.0f} s."
        ]
    lines = [f"Pretext runs on {data_label(table['data'])}, each probed alike:", ""]
    for arm in table["arms"]:
        lines.append(
            f"- `{arm['task']}`: {arm['epochs']} epochs, held-out pretext accuracy "
            f"{_accuracies(arm['heldout_acc'])} ({arm['seconds']:.0f} s)."
        )
    return [*lines, "", f"Total {table['total_seconds']:.0f} s."]


def to_markdown(table: dict[str, Any]) -> str:
    lines = [
        f"# {table['reproduction']} ({table['preset']} preset)",
        "",
        *_pretext_lines(table),
        "",
        f"Test: {table['test']}. Validation: {table['validation']}. Reported: {table['selection']}.",
        "",
        "| row | ours (test %) | val % | paper % | probe input | s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in table["rows"]:
        val = "" if r["val"] is None else f"{r['val']:.2f}"
        paper = "" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(f"| {r['label']} | {r['ours']:.2f} | {val} | {paper} | {r['mode']} | {r['seconds']:.0f} |")
    lines += ["", f"Paper numbers: {table['source']}.", ""]
    if table.get("curves"):
        lines += [f"![training curves per epoch: loss, accuracy, online kNN, embedding std]({table['curves']})", ""]
    for f in table["findings"]:
        lines.append(f"- {'holds' if f['holds'] else 'DOES NOT hold'}: {f['claim']} (margin {f['margin']:+.2f} points)")
    return "\n".join(lines) + "\n"
