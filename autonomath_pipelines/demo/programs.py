"""Stage 1 of the demo world: ``prefectures`` and the program catalogue (``programs``, ``programs_fts``).

``build_prefectures`` writes the 47 real prefectures (no random stream). ``build_programs`` (stream 1,
and 13 for the names' published forms) makes the catalogue: the flagship national programs, then
national, prefectural and municipal ones spread by population, each with a generated name (published in
its raw form), summary, agency, amount, tier, source URL and fetch/update times; the ids are a shuffle,
so they do not reveal the level. The intents and aliases stages use the program's name parts in every
script (``name_parts``, ``region_parts``), the aliases it may have (``alias_pool``) and the foreign forms
a searcher may type for it (``foreign_forms``).
"""

from __future__ import annotations

import numpy as np

from autonomath_pipelines.contract.timestamps import iso_from_epoch as iso
from autonomath_pipelines.demo import text as tx
from autonomath_pipelines.demo import vocab as V
from autonomath_pipelines.demo.common import DAY, EN, KO, ROMAJI, ZH, Program, World


def _yen(v: int | None) -> str:
    if v is None:
        return "定額"
    if v >= 100_000_000 and v % 100_000_000 == 0:
        return f"{v // 100_000_000}億円"
    if v >= 10_000:
        return f"{v // 10_000:,}万円"
    return f"{v:,}円"


# --- region helpers -------------------------------------------------------------------------
def pref_base_reading(i: int) -> str:
    """The (romanized) reading of prefecture ``i`` without its 県/府/都 suffix."""
    name, reading = V.PREFECTURES[i][1], V.PREFECTURES[i][4]
    if name.endswith("県"):
        return reading[:-3]
    if name.endswith(("府", "都")):
        return reading[:-2]
    return reading


def pref_short(i: int) -> str:
    """Prefecture ``i`` without its suffix (北海道 stays whole)."""
    name = V.PREFECTURES[i][1]
    return name if name == "北海道" else name[:-1]


def region_parts(p: Program) -> dict[str, str]:
    """Region parts of a program in every script ('' for national programs)."""
    if p.city is not None:
        cname, base = p.city
        suffix = "ku" if cname.endswith("区") else "shi"
        return {
            "ja": cname,
            "short": cname[:-1],
            "reading": base + suffix,
            "base": base,
            "en": tx.hepburn(base).title(),
            "zh": cname.translate(V.ZH_CHARS),
            "ko": tx.hangul(base) + ("구" if suffix == "ku" else "시"),
        }
    if p.pref is not None:
        _code, name, en, _, reading, ko, _ = V.PREFECTURES[p.pref]
        return {
            "ja": name,
            "short": pref_short(p.pref),
            "reading": reading,
            "base": pref_base_reading(p.pref),
            "en": en,
            "zh": name.translate(V.ZH_CHARS),
            "ko": ko,
        }
    return {"ja": "", "short": "", "reading": "", "base": "", "en": "", "zh": "", "ko": ""}


# --- prefectures and programs ----------------------------------------------------------------
def build_prefectures(w: World) -> None:
    w.insert(
        "prefectures",
        ("prefecture_code", "name_ja", "name_en", "region"),
        [(c, ja, en, reg) for c, ja, en, reg, *_ in V.PREFECTURES],
    )
    w.pref_pop = np.array([p[6] for p in V.PREFECTURES], dtype=float)
    w.progress("prefectures", 47, 47)


def build_programs(w: World) -> None:
    rng = w.rng(1)
    sc = w.sc
    n = sc.programs
    n_flag = len(V.FLAGSHIPS)
    n_nat = max(n_flag + 5, round(n * 0.08))
    n_pref = max(47, round(n * 0.35))
    n_muni = n - n_nat - n_pref
    progs: list[Program] = []
    used: set[str] = set()

    for fi, f in enumerate(V.FLAGSHIPS):
        name = f[0].format(fy=w.fy)
        purpose = next((i for i, pp in enumerate(V.PURPOSES) if pp[6] == f[9]), None)
        progs.append(
            Program(
                len(progs), name, "national", None, None, purpose, None, None, -1, fi, f[9], f[7], f[8], f[11], f[12]
            )
        )
        used.add(name)

    sqrt_pop = np.sqrt(w.pref_pop)
    pref_alloc = 1 + rng.multinomial(n_pref - 47, sqrt_pop / sqrt_pop.sum())
    cities = [(pi, c) for pi, (code, *_rest) in enumerate(V.PREFECTURES) for c in V.CITIES[code]]
    city_w = np.array([sqrt_pop[pi] / len(V.CITIES[V.PREFECTURES[pi][0]]) for pi, _ in cities])
    city_alloc = rng.multinomial(n_muni, city_w / city_w.sum())

    slots: list[tuple[str, int | None, tuple[str, str] | None]] = [("national", None, None)] * (n_nat - n_flag)
    for pi, k in enumerate(pref_alloc.tolist()):
        slots += [("prefectural", pi, None)] * k
    for (pi, c), k in zip(cities, city_alloc.tolist()):
        slots += [("municipal", pi, c)] * k

    tier_p = {
        "national": [0.08, 0.25, 0.37, 0.30],
        "prefectural": [0.03, 0.12, 0.35, 0.50],
        "municipal": [0.02, 0.10, 0.33, 0.55],
    }
    kind_idx = {k[0]: i for i, k in enumerate(V.KINDS)}
    target_idx = {t[0]: i for i, t in enumerate(V.TARGETS)}
    for level, pi, city in slots:
        region_ja = city[0] if city else (V.PREFECTURES[pi][1] if pi is not None else "")
        for attempt in range(200):
            purpose = int(rng.integers(len(V.PURPOSES)))
            group = V.PURPOSES[purpose][7]
            targets, kinds = V.GROUPS[group]
            tname = targets[int(rng.integers(len(targets)))]
            kinds = [k for k in kinds if level == "national" or k != "交付金"]
            kname = kinds[int(rng.integers(len(kinds)))]
            pattern = int(rng.choice(4, p=[0.4, 0.3, 0.1, 0.2]))
            P, K = V.PURPOSES[purpose][0], kname
            T = tname or ""
            if level == "national":
                if not T:
                    core = f"{P}推進{K}"
                    pattern = 4
                else:
                    core = f"{T}{P}{K}" if pattern != 2 else f"{T}向け{P}{K}"
            else:
                if pattern == 0:
                    core = f"{region_ja}{T}{P}{K}"
                elif pattern == 2 and T:
                    core = f"{region_ja}{T}向け{P}{K}"
                else:
                    core = f"{region_ja}{P}{K}"
                    pattern = 1 if pattern != 3 else 3
                    T = ""
            name = f"令和{w.reiwa}年度{core}" if pattern == 3 else core
            if attempt >= 150:
                name = f"{name}（第{attempt - 148}期）"
            if name not in used:
                break
        used.add(name)
        category = V.PURPOSES[purpose][6]
        if level == "national":
            agencies = V.NATIONAL_AGENCY[category]
            agency, slug = agencies[int(rng.integers(len(agencies)))]
        elif level == "prefectural":
            dept_key = V.CATEGORY_DEPT[category]
            pname = V.PREFECTURES[pi][1]
            dept = (V.TOKYO_DEPT if pname == "東京都" else V.HOKKAIDO_DEPT if pname == "北海道" else V.PREF_DEPT)[
                dept_key
            ]
            if pname.endswith(("府", "都")) and dept.startswith("県"):
                dept = pname[-1] + dept[1:]
            agency, slug = pname + dept, "pref-" + tx.hepburn(V.PREFECTURES[pi][4])
        else:
            agency = city[0] + V.CITY_DEPT[V.CATEGORY_DEPT[category]]
            slug = f"city-{tx.hepburn(pref_base_reading(pi))}-{tx.hepburn(city[1])}"
        if K in ("給付金", "支援金"):
            amount = int(rng.choice([50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000]))
        elif level == "national":
            amount = int(rng.choice([2_000_000, 4_500_000, 5_000_000, 10_000_000, 30_000_000, 50_000_000, 100_000_000]))
        elif level == "prefectural":
            amount = int(rng.choice([1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 30_000_000]))
        else:
            amount = int(rng.choice([100_000, 200_000, 300_000, 500_000, 1_000_000, 2_000_000, 3_000_000]))
        if rng.random() < 0.05:
            amount = None
        tier = str(rng.choice(["S", "A", "B", "C"], p=tier_p[level]))
        progs.append(
            Program(
                len(progs),
                name,
                level,
                pi,
                city,
                purpose,
                target_idx[T] if T else None,
                kind_idx[K],
                pattern,
                None,
                category,
                agency,
                slug,
                amount,
                tier,
            )
        )

    # ids: a deterministic shuffle so the id does not reveal the level
    perm = rng.permutation(len(progs))
    for p, k in zip(progs, perm.tolist()):
        p.pid = f"P{k + 1:06d}"
    # texts, urls, times
    age_mix = rng.random(len(progs))
    ages = np.where(
        age_mix < 0.6,
        rng.uniform(0, 90, len(progs)),
        np.where(age_mix < 0.9, rng.uniform(90, 250, len(progs)), rng.uniform(250, 400, len(progs))),
    )
    fetched = (w.t_end - ages * DAY - rng.integers(60, 3600, len(progs))).astype(np.int64)
    edit = rng.random(len(progs)) < 0.2
    upd = fetched + np.where(
        edit, (rng.random(len(progs)) * (w.t_end - 60 - fetched)).astype(np.int64), rng.integers(30, 7200, len(progs))
    )
    upd = np.minimum(upd, w.t_end - 1)
    raw_rng = w.rng(13)
    for p, f, u in zip(progs, fetched.tolist(), upd.tolist()):
        p.fetched, p.updated = f, u
        p.summary = program_summary(p, rng)
        if p.flagship is None:
            # The service's tables hold names as agencies publish them (DESIGN §7: raw text in
            # the index); the flagships keep their well-known spelling.
            subtitle = f"{V.TARGETS[p.target][0]}向け" if p.target is not None else ""
            p.name = tx.published_form(p.name, subtitle, raw_rng)
            if raw_rng.random() < 0.05:
                p.summary += "申請受付は㈱日本政策金融公庫の窓口でも行います。"
        if p.level == "national":
            p.url = f"https://www.example.go.jp/{p.slug}/hojo/{p.pid.lower()}.html"
        else:
            p.url = f"https://www.example.lg.jp/{p.slug}/hojo/{p.pid.lower()}.html"
    w.programs = progs
    by_pid = {p.pid: p for p in progs}
    rows = sorted(
        (
            (
                p.pid,
                p.name,
                p.summary,
                p.agency,
                p.level,
                V.PREFECTURES[p.pref][0] if p.pref is not None else None,
                p.city[0] if p.city else None,
                p.category,
                p.amount,
                p.tier,
                p.url,
                iso(p.fetched),
                iso(p.updated),
            )
            for p in progs
        )
    )
    w.insert(
        "programs",
        (
            "program_id",
            "name",
            "summary",
            "agency",
            "level",
            "prefecture_code",
            "municipality",
            "category",
            "max_amount_jpy",
            "tier",
            "source_url",
            "source_fetched_at",
            "updated_at",
        ),
        rows,
    )
    fts = []
    for r in rows:
        p = by_pid[r[0]]
        region = "全国" if p.pref is None else V.PREFECTURES[p.pref][1] + (f" {p.city[0]}" if p.city else "")
        fts.append((p.pid, p.name, p.summary, p.agency, region))
    w.insert("programs_fts", ("program_id", "name", "summary", "agency", "region"), fts)
    w.progress("programs", len(progs), len(progs))


def program_summary(p: Program, rng: np.random.Generator) -> str:
    """The published summary of a program, from the templates of its kind."""
    region = region_parts(p)["ja"] or "全国"
    if p.flagship is not None:
        target = V.FLAGSHIPS[p.flagship][10] or "地方公共団体"
    elif p.target is not None:
        target = V.TARGETS[p.target][0]
    else:
        group = V.PURPOSES[p.purpose][7]
        target = {
            "life": "住民",
            "home": "住宅の所有者",
            "agri": "農業者",
            "home_or_biz": "住民・事業者",
            "startup": "創業予定者",
        }.get(group, "中小企業・小規模事業者")
    purpose = V.PURPOSES[p.purpose][0] if p.purpose is not None else p.category
    kind = V.KINDS[p.kind][0] if p.kind is not None else ""
    templates = V.BENEFIT_TEMPLATES if kind in ("給付金", "支援金") else V.SUMMARY_TEMPLATES
    t = templates[int(rng.integers(len(templates)))]
    return t.format(
        region=region,
        target=target,
        purpose=purpose,
        amount=_yen(p.amount),
        rate=V.RATES[int(rng.integers(len(V.RATES)))],
        agency=p.agency,
        season=V.SEASONS[int(rng.integers(len(V.SEASONS)))],
    )


# --- program component forms (names, readings, translations) --------------------------------
def name_parts(p: Program) -> dict[str, str]:
    """Name parts of a generated program in every script."""
    r = region_parts(p)
    P = V.PURPOSES[p.purpose]
    T = V.TARGETS[p.target] if p.target is not None else None
    K = V.KINDS[p.kind]
    # reading of the name without the 令和 prefix
    parts = [r["reading"]]
    if T:
        parts.append(T[1])
        if p.pattern == 2:
            parts.append("muke")
    parts.append(P[1])
    if p.pattern == 4:
        parts.append("suishin")
    parts.append(K[1])
    reading = " ".join(x for x in parts if x)

    def rom(c):
        return c[2] or tx.hepburn(c[1])

    return {
        "R": r["ja"],
        "Rs": r["short"],
        "T": T[0] if T else "",
        "P": P[0],
        "K": K[0],
        "reading": reading,
        "R_base_rom": tx.hepburn(r["base"]),
        "R_en": r["en"],
        "T_en": T[3] if T else "",
        "P_en": P[3],
        "K_en": K[3],
        "R_zh": r["zh"],
        "T_zh": T[4] if T else "",
        "P_zh": P[4],
        "K_zh": K[4],
        "R_ko": r["ko"],
        "T_ko": T[5] if T else "",
        "P_ko": P[5],
        "K_ko": K[5],
        "P_rom": rom(P),
        "K_rom": rom(K),
        "T_rom": rom(T) if T else "",
    }


def alias_pool(p: Program, fy: int, reiwa: int) -> list[tuple[str, str]]:
    """Every ``(surface, lang)`` an alias of ``p`` may take (fiscal year ``fy`` = 令和 ``reiwa``)."""
    out: dict[str, str] = {}

    def add(s: str, lang: str) -> None:
        s = " ".join(s.split())
        if s and s != p.name and s not in out:
            out[s] = lang

    if p.flagship is not None:
        f = V.FLAGSHIPS[p.flagship]
        name, short, kana = p.name, f[1], f[2]
        add(short, "ja")
        add(f"{short} {fy}", "ja")
        add(f"令和{reiwa}年度{short}", "ja")
        add(name.replace("・", ""), "ja")
        add(f"{short}（{f[7]}）", "ja")
        add(kana, "ja-Kana")
        add(tx.hiragana(kana), "ja-Kana")
        for s in f[3]:
            add(s, "ja-Latn")
            add(s.replace(" ", ""), "ja-Latn")
        for s in f[4]:
            add(s, "en")
            add(s.lower(), "en")
        add(f[5], "zh")
        add(f[6], "ko")
        for v in (name, short):
            if any(c.isascii() and c.isalnum() for c in v):
                add(tx.to_fullwidth(v), "ja")
            if tx.has_katakana(v):
                add(tx.to_halfwidth_kana(v), "ja")
        return list(out.items())
    F = name_parts(p)
    R, Rs, T, P, K = F["R"], F["Rs"], F["T"], F["P"], F["K"]
    ksimple = {
        "補助金": "補助",
        "助成金": "助成",
        "支援補助金": "支援補助",
        "給付金": "給付",
        "支援事業": "支援",
        "奨励金": "奨励",
        "支援金": "支援",
        "促進事業費補助金": "補助",
        "交付金": "交付",
    }[K]
    add(P + K, "ja")
    if R:
        add(f"{R}の{P}{K}", "ja")
        add(f"{R} {P} {K}", "ja")
        add(f"{Rs}{P}{K}", "ja")
        add(f"{P}{K}（{R}）", "ja")
        add(f"{Rs} {P}", "ja")
        add(f"{P} {K} {Rs}", "ja")
    elif T:
        add(f"{T} {P} {K}", "ja")
    if T:
        add(f"{T}向け{P}{K}", "ja")
    add(f"{p.agency} {P}{K}", "ja")
    add(p.name.replace(K, ksimple) if p.name.endswith(K) else p.name + "事業", "ja")
    if p.pattern == 3:
        add(p.name.replace(f"令和{reiwa}年度", ""), "ja")
    else:
        add(f"{fy}年度 {p.name}", "ja")
    if any(c.isascii() and c.isalnum() for c in p.name):
        add(tx.to_fullwidth(p.name), "ja")
    if tx.has_katakana(p.name):
        add(tx.to_halfwidth_kana(p.name), "ja")
    kata = tx.katakana(F["reading"])
    add(kata, "ja-Kana")
    add(tx.hiragana(kata), "ja-Kana")
    add(tx.katakana(f"{V.PURPOSES[p.purpose][1]} {V.KINDS[p.kind][1]}"), "ja-Kana")
    hep = tx.hepburn(F["reading"])
    add(hep, "ja-Latn")
    add(F["reading"].replace("-", "").replace("'", ""), "ja-Latn")
    add(hep.replace(" ", ""), "ja-Latn")
    add(f"{F['R_base_rom']} {F['P_rom']} {F['K_rom']}", "ja-Latn")
    add(" ".join(x for x in (F["R_en"], F["T_en"], F["P_en"], F["K_en"]) if x), "en")
    e2 = " ".join(x for x in (F["R_en"], F["P_en"], F["K_en"]) if x)
    add(e2, "en")
    add(e2.lower(), "en")
    add(f"{F['P_en']} {F['K_en']}" + (f" ({F['R_en']})" if F["R_en"] else ""), "en")
    add(F["R_zh"] + F["T_zh"] + F["P_zh"] + F["K_zh"], "zh")
    add(F["R_zh"] + F["P_zh"] + F["K_zh"], "zh")
    add(" ".join(x for x in (F["R_ko"], F["T_ko"], F["P_ko"], F["K_ko"]) if x), "ko")
    add(" ".join(x for x in (F["R_ko"], F["P_ko"], F["K_ko"]) if x), "ko")
    return list(out.items())


def foreign_forms(p: Program) -> dict[int, list[str]]:
    """Foreign surface forms a searcher may type for a program (some are aliases, some not)."""
    if p.flagship is not None:
        f = V.FLAGSHIPS[p.flagship]
        return {ROMAJI: list(f[3]), EN: list(f[4]), ZH: [f[5]], KO: [f[6]]}
    F = name_parts(p)
    Ren = F["R_en"]
    en = [
        " ".join(x for x in (Ren, F["P_en"], F["K_en"]) if x),
        (" ".join(x for x in (Ren, F["P_en"], F["K_en"]) if x)).lower(),
        f"{F['P_en']} {F['K_en']} {Ren}".strip().lower(),
        f"{F['K_en']} for {F['P_en']}" + (f" in {Ren}" if Ren else ""),
    ]
    romaji = [
        f"{F['R_base_rom']} {F['P_rom']} {F['K_rom']}".strip(),
        f"{F['P_rom']} {F['K_rom']} {F['R_base_rom']}".strip(),
    ]
    zh = [F["R_zh"] + F["P_zh"] + F["K_zh"], F["R_zh"] + " " + F["P_zh"] + F["K_zh"]]
    ko = [
        " ".join(x for x in (F["R_ko"], F["P_ko"], F["K_ko"]) if x),
        " ".join(x for x in (F["R_ko"], F["P_ko"], "지원금") if x),
    ]
    return {EN: en, ROMAJI: romaji, ZH: zh, KO: ko}
