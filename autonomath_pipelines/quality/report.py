"""The eval's table, Markdown report and plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from autonomath_pipelines.quality.scores import NOTES, Metric

MD_NAME, JSON_NAME, PNG_NAME = "loop_quality.md", "loop_quality.json", "loop_quality.png"


HEADER = ["loop", "metric", "value", "baseline", "verdict"]


def markdown_table(metrics: Sequence[Metric]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for m in metrics:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in m.row()) + " |")
    return "\n".join(lines)


def render_markdown(result: dict) -> str:
    w = result["world"]
    parts = [
        "# Loop quality vs planted truth",
        "",
        f"World: **{w['scale']}**, seed {w['seed']}, logs end {w['as_of']} JST (`{w['db_path']}`); "
        f"embedding model `{result['embedding_model']}`; code {result['code_version']}.",
        "",
        "Partitions: " + ", ".join(f"{k} `{v}`" for k, v in result["partitions"].items()) + ".",
        "",
        markdown_table(
            [Metric(**{k: v for k, v in m.items() if k not in ("verdict", "criterion")}) for m in result["metrics"]]
        ),
        "",
        f"Verdicts: {result['summary']['pass']} pass, {result['summary']['fail']} FAIL, "
        f"{result['summary']['info']} informational, {result['summary']['n/a']} n/a.",
        "",
        "## Notes",
        "",
        *[f"- {n}" for n in NOTES],
        "",
        f"![value vs baseline]({PNG_NAME})",
        "",
    ]
    return "\n".join(parts)


def plot(result: dict, path: Path) -> None:
    from autonomath_pipelines.lib.plots import pyplot

    plt = pyplot()

    ratio = [m for m in result["metrics"] if m["unit"] in ("ratio", "tau") and m["value"] is not None]
    days = [m for m in result["metrics"] if m["unit"] == "days" and m["value"] is not None]
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(15, max(4.5, 0.42 * len(ratio) + 1.5)), gridspec_kw={"width_ratios": [2.6, 1]}
    )
    y = np.arange(len(ratio))[::-1]
    ax.barh(
        y + 0.2,
        [m["value"] for m in ratio],
        0.4,
        color=["#d1495b" if m["verdict"] == "FAIL" else "#30638e" for m in ratio],
        label="loop",
    )
    ax.barh(
        y - 0.2,
        [m["baseline"] if m["baseline"] is not None else 0 for m in ratio],
        0.4,
        color="#bbbbbb",
        label="baseline",
    )
    ax.set_yticks(
        y,
        [
            f"{m['loop']}: {m['metric'][:62]}" + (f"\n    vs {m['baseline_label'][:60]}" if m["baseline_label"] else "")
            for m in ratio
        ],
        fontsize=6.5,
    )
    ax.set_xlim(min(0, min([m["value"] for m in ratio] + [0])), 1.05)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("score (red bar: FAIL)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    d = result["details"].get("D", {})
    bars = [
        ("held-out MAE\nno correction", d.get("mae_none"), "#bbbbbb"),
        ("held-out MAE\nunpooled mean", d.get("mae_unpooled"), "#bbbbbb"),
        ("held-out MAE\nloop D (EB)", d.get("mae_loop"), "#30638e"),
        ("held-out MAE\nplanted bias (oracle)", d.get("mae_oracle_planted_bias"), "#66a182"),
    ]
    bias = [m for m in days if "planted bias" in m["metric"]]
    if bias:
        bars += [
            ("|bias error|\nunpooled mean", bias[0]["baseline"], "#bbbbbb"),
            ("|bias error|\nloop D (EB)", bias[0]["value"], "#30638e"),
        ]
    bars = [b for b in bars if b[1] is not None]
    bx.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
    bx.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7, rotation=45, ha="right")
    for i, (_, v, _) in enumerate(bars):
        bx.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    bx.set_ylabel("days")
    bx.set_title(f"Loop D: forecast error, {d.get('held_out_predictions', 0)} held-out predictions", fontsize=9)
    w = result["world"]
    fig.suptitle(
        f"Loop quality vs planted truth — {w['scale']} world, seed {w['seed']}, logs end {w['as_of']}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
