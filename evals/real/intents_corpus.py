"""Build the intent-labelled corpora of section A/E (``data/real/intents/<corpus>/intents.csv``).

    .venv/bin/python evals/real/intents_corpus.py --mirrors DIR [--out data/real/intents]

``--mirrors`` holds bare git clones named ``<owner>+<name>`` (a ``repo`` folder inside each is
accepted too) of the public repositories below; nothing is downloaded here.

``hwu64_en``  HWU64 (xliuhw/NLU-Evaluation-Data, CC BY 4.0): the test sets of cross-validation
              folds 1–3 (``CrossValidation/.../KFold_{1,2,3}/testset/annotated/*.json``), 3,228
              user requests in 64 intents.
``alexa_ja``  ja-JP Alexa interaction models of the permissively licensed skills in ``SKILLS``:
              each intent's sample utterances, ``{slot}`` filled with up to 3 values of the slot's
              own custom type (built-in AMAZON.* types: the few values in ``BUILTIN_VALUES``,
              chosen here), deduplicated; label ``<skill>:<intent>``, AMAZON.* intents pooled across
              skills; intents with fewer than 8 texts dropped (8 is loop A's min_samples).
The utterance templates are the skill authors'; the slot values of built-in types are ours.
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import json
import pathlib
import random
import re
import subprocess

HWU = ("xliuhw+NLU-Evaluation-Data", "CC BY 4.0")
SKILLS = {
    "uemuram+alexa-calendar": "Apache-2.0",
    "uemuram+alexa-fitbitRecord": "Apache-2.0",
    "uemuram+alexa-yubaba": "Apache-2.0",
    "uemuram+alexa-stopwatch": "Apache-2.0",
    "uemuram+alexa-shogi": "Apache-2.0",
    "r-ca+kidshift-skills": "MIT",
    "myasumoto16+nudge": "MIT",
    "kun432+alexa-skill-http-status-code": "MIT",
    "dabblelab+29-alexa-appointment-scheduler-skill": "redistribution permitted (LICENSE.txt)",
    "squall0627+alexa-skill-ns": "Apache-2.0 (package.json)",
    "mu-777+BusTimetableAlexaSkill": "Apache-2.0 (package.json)",
    "chandora+alexa-samples-alexa-skill-reminder": "Apache-2.0 (package.json)",
    "Ojoxux+Myera": "MIT (package.json)",
    "ambit1977+buscool": "ISC (package.json)",
}
BUILTIN_VALUES = {
    "AMAZON.NUMBER": ["3", "10", "25"],
    "AMAZON.FOUR_DIGIT_NUMBER": ["5", "2"],
    "AMAZON.DATE": ["今日", "明日", "来週の月曜日", "3月5日"],
    "AMAZON.TIME": ["7時", "午後3時", "10時半"],
    "AMAZON.DURATION": ["5分", "1時間", "30秒"],
    "AMAZON.SearchQuery": ["テスト", "買い物"],
    "AMAZON.FirstName": ["太郎", "花子"],
    "AMAZON.Person": ["太郎", "花子"],
    "AMAZON.City": ["東京", "大阪"],
    "AMAZON.JP_CITY": ["東京", "大阪"],
    "AMAZON.Color": ["赤", "青"],
    "AMAZON.Food": ["りんご", "牛乳"],
    "AMAZON.Country": ["日本", "フランス"],
}
MIN_TEXTS = 8


def _git(mirrors: pathlib.Path, repo: str, *args: str) -> str:
    folder = mirrors / repo
    for candidate in (folder / "repo" / ".git", folder / "repo", folder):
        if (candidate / "HEAD").is_file():
            folder = candidate
            break
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def _write(folder: pathlib.Path, rows: list[tuple[str, str]], source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "intents.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)
    (folder / "SOURCE.md").write_text(source, encoding="utf-8")


def build_hwu(mirrors: pathlib.Path, out: pathlib.Path) -> int:
    repo, licence = HWU
    files = [
        f
        for f in _git(mirrors, repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
        if f.endswith(".json") and any(f"/KFold_{k}/testset/annotated/" in f for k in (1, 2, 3))
    ]
    rows = [
        (r["text"].strip(), r["intent"])
        for f in files
        for r in json.loads(_git(mirrors, repo, "show", f"HEAD:{f}"))["test_data_annotation"]
    ]
    _write(out / "hwu64_en", rows, f"HWU64, github.com/{repo.replace('+', '/')}, folds 1-3 test sets. {licence}.\n")
    return len(rows)


def build_alexa(mirrors: pathlib.Path, out: pathlib.Path) -> int:
    rng = random.Random(13)
    rows: list[tuple[str, str]] = []
    sources = []
    for repo, licence in SKILLS.items():
        paths = [
            f
            for f in _git(mirrors, repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
            if f.endswith("ja-JP.json") and ("interactionModels" in f or f.endswith("models/ja-JP.json"))
        ]
        model = json.loads(_git(mirrors, repo, "show", f"HEAD:{paths[0]}"))["interactionModel"]["languageModel"]
        types = {t["name"]: [v["name"]["value"] for v in t["values"]] for t in model.get("types", [])}
        sources.append(f"- github.com/{repo.replace('+', '/')} `{paths[0]}` — {licence}")
        for intent in model["intents"]:
            slots = {s["name"]: s["type"] for s in intent.get("slots", [])}
            label = intent["name"] if intent["name"].startswith("AMAZON.") else f"{repo.split('+')[1]}:{intent['name']}"
            for sample in intent.get("samples", []):
                names = re.findall(r"\{(\w+)\}", sample)
                choices = [types.get(slots.get(n, ""), BUILTIN_VALUES.get(slots.get(n, ""))) for n in names]
                if any(not c for c in choices):
                    continue
                combos = list(itertools.product(*choices)) if choices else [()]
                rng.shuffle(combos)
                for combo in combos[:3]:
                    text = sample
                    for n, v in zip(names, combo):
                        text = text.replace("{" + n + "}", v, 1)
                    text = re.sub(r"\s+", " ", text).strip()
                    if text:
                        rows.append((text, label))
    rows = list(dict.fromkeys(rows))
    counts = collections.Counter(label for _, label in rows)
    rows = [r for r in rows if counts[r[1]] >= MIN_TEXTS]
    _write(
        out / "alexa_ja",
        rows,
        "Pooled ja-JP Alexa interaction models (see evals/real/intents_corpus.py).\n\n" + "\n".join(sources) + "\n",
    )
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("data/real/intents"))
    args = parser.parse_args(argv)
    print("hwu64_en", build_hwu(args.mirrors, args.out))
    print("alexa_ja", build_alexa(args.mirrors, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
