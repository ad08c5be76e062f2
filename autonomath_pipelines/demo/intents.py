"""Stage 3 of the demo world: the search intents behind ``query_log`` and their surface forms.

Intents are program names (flagship short names too), topics (prefecture + purpose) and categories
(purpose + place), ranked by popularity with the hallucination families slotted in at planned ranks;
their probability is Zipf over the rank (``ZIPF_EXPONENT``). Each intent has surface forms: the
canonical text, paraphrases, typos, width variants and foreign forms (en, romaji, zh, ko). Half of the
typos and the foreign forms are ``planted``: queries the ranker answers with one program at low
confidence, the raw material of loop E. No table is written here; ``traffic`` samples from this.
"""

from __future__ import annotations

import unicodedata

import numpy as np

from autonomath_pipelines.demo import text as tx
from autonomath_pipelines.demo import vocab as V
from autonomath_pipelines.demo.common import (
    CANON,
    CATEGORY,
    EN,
    HALL,
    KO,
    NAME,
    PARA,
    ROMAJI,
    SHORT,
    SURFACE_KIND_NAMES,
    TOPIC,
    TYPO,
    WIDTH,
    ZH,
    ZIPF_EXPONENT,
    Program,
    World,
)
from autonomath_pipelines.demo.programs import foreign_forms, name_parts, pref_base_reading, pref_short, region_parts

FOREIGN_LANG = {EN: "en", ROMAJI: "ja-Latn", ZH: "zh", KO: "ko"}


class _Surfaces:
    """Global table of query surface forms; a text belongs to exactly one intent."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.intent: list[int] = []
        self.kind: list[int] = []
        self.weight: list[float] = []
        self.index: dict[str, int] = {}
        self.reserved: set[str] = set()  # canonical texts: no other intent may use them

    def add(self, text: str, intent: int, kind: int, weight: float) -> int | None:
        text = text.strip()
        if not text or text in self.index or (kind != CANON and text in self.reserved):
            return None
        self.index[text] = len(self.texts)
        self.texts.append(text)
        self.intent.append(intent)
        self.kind.append(kind)
        self.weight.append(weight)
        return len(self.texts) - 1


def build_intents(w: World) -> None:
    rng = w.rng(3)
    sc = w.sc
    progs = w.programs
    # (kind, canonical text, program idx or -1, family idx or -1, popularity score)
    intents: list[list] = []
    pop_w = lambda pi: (w.pref_pop[pi] / 500.0) if pi is not None else 1.0  # noqa: E731
    tier_w = {"S": 10.0, "A": 4.0, "B": 2.0, "C": 1.0}
    level_w = {"national": 2.0, "prefectural": 1.5, "municipal": 1.0}
    for p in progs:
        if p.flagship is not None:
            f = V.FLAGSHIPS[p.flagship]
            # the famous ones first (ものづくり, IT導入, 再構築, 持続化 …), with some noise
            base = 1000.0 * (p.flagship + 1) ** -0.8 * (1.5 if p.tier == "S" else 1.0)
            intents.append([SHORT, f[1], p.idx, -1, base * rng.lognormal(0, 0.3)])
            intents.append([NAME, p.name, p.idx, -1, 60.0 * rng.lognormal(0, 0.5)])
        else:
            score = tier_w[p.tier] * level_w[p.level] * pop_w(p.pref) ** 0.5 * rng.lognormal(0, 0.8)
            intents.append([NAME, p.name, p.idx, -1, score])

    def ksimple(p: Program) -> str:
        k = V.KINDS[p.kind][0]
        return "助成金" if "助成" in k else "給付金" if "給付" in k else "補助金"

    # topic intents: "<prefecture> <purpose> <kind>" for prefectural programs
    seen: set[tuple] = set()
    cand = [p for p in progs if p.level == "prefectural"]
    n_topic = 0
    for j in rng.permutation(len(cand)).tolist():
        if n_topic >= sc.topic_intents:
            break
        p = cand[j]
        key = (p.pref, p.purpose)
        if key in seen:
            continue
        seen.add(key)
        text = f"{V.PREFECTURES[p.pref][1]} {V.PURPOSES[p.purpose][0]} {ksimple(p)}"
        intents.append([TOPIC, text, p.idx, -1, 6.0 * pop_w(p.pref) ** 0.7 * rng.lognormal(0, 0.8)])
        n_topic += 1
    # category intents: "<purpose> <kind> <place>" (vaguer) for municipal programs
    cand = [p for p in progs if p.level == "municipal"]
    n_cat = 0
    for j in rng.permutation(len(cand)).tolist():
        if n_cat >= sc.category_intents:
            break
        p = cand[j]
        use_city = rng.random() < 0.5
        place = p.city[0][:-1] if use_city else pref_short(p.pref)
        key = (place, p.purpose, "cat")
        if key in seen:
            continue
        seen.add(key)
        P = V.PURPOSES[p.purpose][0]
        text = f"{P} {ksimple(p)} {place}" if rng.random() < 0.6 else f"{place} {P} {ksimple(p)}"
        intents.append([CATEGORY, text, p.idx, -1, 4.0 * pop_w(p.pref) ** 0.5 * rng.lognormal(0, 0.8)])
        n_cat += 1

    # one intent per canonical text
    uniq: dict[str, list] = {}
    for it in intents:
        uniq.setdefault(it[1], it)
    intents = list(uniq.values())
    # rank: popularity order, hallucination families inserted at planned ranks
    scores = np.array([it[4] for it in intents])
    ranked = [intents[i] for i in np.lexsort((np.arange(len(intents)), -scores)).tolist()]
    fams = [V.HALLUCINATION_FAMILIES[i] for i in range(min(sc.hallucination_families, len(V.HALLUCINATION_FAMILIES)))]
    fam_order = rng.permutation(len(fams)).tolist()
    n_total = len(ranked) + len(fams)
    hi = max(60, n_total // 3)
    positions = np.unique(np.round(np.geomspace(20, hi, len(fams))).astype(int)).tolist()
    while len(positions) < len(fams):
        positions.append(positions[-1] + 3)
    hall_at = dict(zip(positions, fam_order))
    final: list[list] = []
    it_iter = iter(ranked)
    for r in range(n_total):
        if r in hall_at:
            fi = hall_at[r]
            final.append([HALL, fams[fi][2], -1, fi, 0.0])
        else:
            final.append(next(it_iter))
    w.families = fams
    n_int = len(final)
    ranks = np.arange(1, n_int + 1, dtype=float)
    p_int = ranks**-ZIPF_EXPONENT
    w.int_p = p_int / p_int.sum()
    w.int_kind = np.array([it[0] for it in final], dtype=np.int64)
    w.int_text = [it[1] for it in final]
    w.int_prog = np.array([it[2] for it in final], dtype=np.int64)
    w.int_family = np.array([it[3] for it in final], dtype=np.int64)
    w.int_ids = [f"I{i + 1:06d}" for i in range(n_int)]
    # surfaces
    S = _Surfaces()
    S.reserved = {it[1] for it in final}
    w.planted = []  # foreign surfaces (and typos) hitting one program
    claimed: dict[str, int] = {}
    pref_names = [p[1] for p in V.PREFECTURES]
    pref_p = w.pref_pop / w.pref_pop.sum()
    for i, it in enumerate(final):
        kind, canon, pidx, fam = it[0], it[1], it[2], it[3]
        frac = i / n_int
        if kind == HALL:
            texts = fams[fam][3]
            S.add(canon, i, CANON, 0.25)
            resolved = []
            for t in texts:
                if "{pref}" in t:
                    for pi in rng.choice(47, size=2, replace=False, p=pref_p).tolist():
                        resolved.append(t.format(pref=pref_names[pi], fy=w.fy))
                else:
                    resolved.append(t.format(fy=w.fy))
            for t in resolved:
                S.add(t, i, PARA, 0.6 / len(resolved))
            S.add(tx.typo(resolved[0], rng), i, TYPO, 0.05)
            S.add(
                resolved[0].replace(" ", "\u3000") if " " in resolved[0] else tx.to_fullwidth(resolved[0]),
                i,
                WIDTH,
                0.05,
            )
            continue
        p = progs[pidx]
        S.add(canon, i, CANON, 0.55 if kind in (NAME, SHORT) else 0.6)
        n_para = 3 if frac < 0.1 else 2 if frac < 0.4 else 1
        n_typo = 2 if frac < 0.1 else 1 if (frac < 0.4 or rng.random() < 0.5) else 0
        if kind in (NAME, SHORT):
            for j in rng.choice(len(V.NAME_SUFFIXES), size=n_para, replace=False).tolist():
                S.add(canon + V.NAME_SUFFIXES[j], i, PARA, 0.06)
            if kind == NAME and p.flagship is None:
                F = name_parts(p)
                alt = f"{F['R']} {F['P']}{F['K']}" if F["R"] else f"{F['P']}{F['K']} {F['T']}"
                if rng.random() < 0.5:
                    S.add(alt, i, PARA, 0.05)
        else:
            words = canon.split(" ")
            paras = [
                " ".join(words[1:] + words[:1]),
                canon.replace(" ", "", 1).replace(" ", "の", 1) if kind == TOPIC else " ".join(words[::-1]),
                canon + V.TOPIC_SUFFIXES[int(rng.integers(len(V.TOPIC_SUFFIXES)))].format(fy=w.fy),
            ]
            if kind == TOPIC:
                paras.append(canon.replace(V.PREFECTURES[p.pref][1], pref_short(p.pref), 1))
            for t in paras[: n_para + 1]:
                S.add(t, i, PARA, 0.06)
        for _ in range(n_typo):
            si = S.add(tx.typo(canon, rng), i, TYPO, 0.03)
            # half of the typos confuse the ranker: low confidence, still the right single program
            if si is not None and kind != CATEGORY and rng.random() < 0.5:
                w.planted.append({"surface_idx": si, "program": p.idx, "intent": i, "lang": "ja", "kind": "typo"})
        if unicodedata.normalize("NFKC", canon) != canon:
            wv = unicodedata.normalize("NFKC", canon)  # a name published in raw forms, typed plainly
        elif any(c.isascii() and c.isalnum() for c in canon):
            wv = tx.to_fullwidth(canon)
        elif " " in canon:
            wv = canon.replace(" ", "\u3000")
        elif tx.has_katakana(canon):
            wv = tx.to_halfwidth_kana(canon)
        else:
            r = region_parts(p)["ja"]
            wv = canon.replace(r, r + "\u3000", 1) if r and canon.startswith(r) else canon + "\u3000"
        S.add(wv, i, WIDTH, 0.04)
        # foreign forms → low-confidence single-program hits (loop E's raw material)
        if kind == CATEGORY or (kind == NAME and p.flagship is not None):
            continue
        n_foreign = 4 if frac < 0.05 else 2 if frac < 0.3 else (1 if rng.random() < 0.3 else 0)
        if n_foreign == 0:
            continue
        if kind == TOPIC:
            F = name_parts(p)
            pr = V.PREFECTURES[p.pref]
            ks = canon.rsplit(" ", 1)[1]
            kinfo = next(k for k in V.KINDS if k[0] == ks)
            forms = {
                EN: [f"{pr[2]} {F['P_en']} {kinfo[3]}", f"{F['P_en']} {kinfo[3]} {pr[2]}".lower()],
                ROMAJI: [f"{tx.hepburn(pref_base_reading(p.pref))} {F['P_rom']} {tx.hepburn(kinfo[1])}"],
                ZH: [f"{pr[1].translate(V.ZH_CHARS)}{F['P_zh']}{kinfo[4]}"],
                KO: [f"{pr[5]} {F['P_ko']} {kinfo[5]}"],
            }
        else:
            forms = foreign_forms(p)
        langs = [EN, ROMAJI, ZH, KO]
        chosen = (
            langs
            if n_foreign >= 4
            else [langs[j] for j in sorted(rng.choice(4, size=n_foreign, replace=False).tolist())]
        )
        for lk in chosen:
            opts = forms[lk]
            t = opts[int(rng.integers(len(opts)))]
            t = " ".join(t.split())
            if t in claimed:
                continue
            si = S.add(t, i, lk, 0.03)
            if si is not None:
                claimed[t] = p.idx
                w.planted.append(
                    {
                        "surface_idx": si,
                        "program": p.idx,
                        "intent": i,
                        "lang": FOREIGN_LANG[lk],
                        "kind": SURFACE_KIND_NAMES[lk],
                    }
                )
    # flat arrays, weights normalized per intent, laid out as global cumulative "intent + cum"
    s_int = np.array(S.intent, dtype=np.int64)
    s_w = np.array(S.weight, dtype=float)
    tot = np.bincount(s_int, weights=s_w, minlength=n_int)
    s_wn = s_w / tot[s_int]
    # surfaces are added intent by intent, so they are contiguous and in intent order
    assert (np.diff(s_int) >= 0).all() and len(np.unique(s_int)) == n_int
    starts = np.searchsorted(s_int, np.arange(n_int))
    cs = np.cumsum(s_wn)
    base = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
    cum_within = cs - base[s_int]
    w.s_cum = s_int + np.minimum(cum_within, 1.0)
    w.s_cum[np.r_[starts[1:] - 1, len(s_int) - 1]] = np.arange(1, n_int + 1)  # exact upper edges
    w.s_int = s_int
    w.s_kind = np.array(S.kind, dtype=np.int64)
    w.s_text = np.array(S.texts, dtype=object)
    w.int_canon_surface = starts
    w.progress("intents", n_int, n_int)
