"""Stages 6 to 12 of the demo world: what the service records besides searches.

6. ``customer_feedback``: wrong-answer reports quoting hallucination asks (family-labelled), misled
   region answers and other complaints, and positive notes on confident answers.
7. ``hallucination_guard``: the launch patterns; about 40 % of the hallucination families are already
   covered, the rest are patterns for concepts outside the service.
8. ``customer_success_events``: outcomes per program and prefecture; hot groups recur every JST month.
9. ``am_application_round`` and ``forecast_predictions``: rounds per program and forecasts of their
   opening with a planted per-program bias (``FORECAST_*``).
10. ``am_alias``: aliases from each program's ``alias_pool``; half of the planted surfaces are in it.
11. ``error_log``: tracebacks of ``tracebacks.FAILURE_MODES`` over three deploy versions, with
    incident bursts, truncated or headless traces, and log formats from a stream of their own (1101).
12. ``source_change_signals``: nightly liveness scans of program pages (changed, gone, noisy servers)
    and agency index pages.

Each stage records its part of the truth in ``World.truth``.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from autonomath_pipelines.contract.timestamps import iso_from_epoch as iso
from autonomath_pipelines.demo import tracebacks as tb
from autonomath_pipelines.demo import vocab as V
from autonomath_pipelines.demo.common import DAY, DIURNAL, HALL, JST, World, iso_list, jst_midnight, random_hex
from autonomath_pipelines.demo.programs import alias_pool

FORECAST_POOLED_MEAN = 5.0
FORECAST_POOLED_SD = 7.0
FORECAST_NOISE_SD = 10.0


def build_feedback(w: World) -> None:
    rng = w.rng(6)
    sc = w.sc
    n_fb = int(round(sc.feedback_per_day * sc.days))
    n_hall = int(n_fb * 0.45)
    n_wrong = int(n_fb * 0.2)
    n_pos = n_fb - n_hall - n_wrong
    ik = w.int_kind[w.q_intent]
    fb: list[tuple] = []  # ts, key idx, session idx | -1, surface | -1, program | -1, wrong, comment, family, reason
    hall_rows = np.flatnonzero((ik == HALL) & (w.q_rc > 0))
    if len(hall_rows) == 0:
        hall_rows = np.flatnonzero(ik == HALL)
    for r in rng.choice(hall_rows, size=min(n_hall, len(hall_rows)), replace=False).tolist():
        fam = int(w.int_family[w.q_intent[r]])
        t = V.HALLUCINATION_COMPLAINTS[int(rng.integers(len(V.HALLUCINATION_COMPLAINTS)))]
        fb.append((r, 1, t.format(label=w.families[fam][1]), fam, "hallucination", False))
    real = ik != HALL
    misled = np.flatnonzero(real & (w.q_top1 >= 0) & (w.q_top1 != w.int_prog[w.q_intent]))
    others = np.flatnonzero(real & (w.q_top1 >= 0))
    n_region = min(len(misled), n_wrong // 3)
    for r in rng.choice(misled, size=n_region, replace=False).tolist():
        fb.append((r, 1, None, -1, "region", rng.random() < 0.1))
    non_region = [c for c in V.WRONG_ANSWER_COMMENTS if c[0] != "region"]
    for r in rng.choice(others, size=n_wrong - n_region, replace=False).tolist():
        reason, _ = non_region[int(rng.integers(len(non_region)))]
        fb.append((r, 1, None, -1, reason, rng.random() < 0.1))
    good = np.flatnonzero(real & (w.q_conf >= 0.85))
    for r in rng.choice(good, size=min(n_pos, len(good)), replace=False).tolist():
        fb.append((r, 0, V.POSITIVE_COMMENTS[int(rng.integers(len(V.POSITIVE_COMMENTS)))], -1, "positive", False))
    rows = []
    for r, wrong, comment, fam, reason, webform in fb:
        if reason not in ("hallucination", "positive"):
            opts = [c for c in V.WRONG_ANSWER_COMMENTS if c[0] == reason]
            comment = opts[int(rng.integers(len(opts)))][1]
            pref = w.programs[int(w.int_prog[w.q_intent[r]])].pref
            comment = comment.format(
                fy_prev=w.fy - 1 - int(rng.integers(0, 2)),
                pref=V.PREFECTURES[pref][1] if pref is not None else "東京都",
            )
        t = min(int(w.q_ts[r]) + int(rng.integers(20, 1800)), w.t_end - 1)
        top1 = int(w.q_top1[r])
        rows.append(
            (
                t,
                w.key_str[w.q_key[r]],
                None if webform else w.sess_str[w.q_sess[r]],
                None if webform else w.s_text[w.q_surf[r]],
                w.programs[top1].pid if top1 >= 0 else None,
                wrong,
                comment,
                fam,
                reason,
            )
        )
    rows.sort(key=lambda x: (x[0], x[1], x[4] or "", x[6] or ""))
    labels = {}
    fam_ids: dict[int, list[int]] = {}
    out = []
    for i, r in enumerate(rows, start=1):
        out.append((i, iso(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]))
        labels[str(i)] = {"family": w.families[r[7]][0] if r[7] >= 0 else None, "reason": r[8]}
        if r[7] >= 0:
            fam_ids.setdefault(r[7], []).append(i)
    w.insert(
        "customer_feedback",
        ("id", "ts", "api_key", "session_id", "query_text", "program_id", "wrong_answer", "comment"),
        out,
    )
    w.truth["feedback_labels"] = labels
    w.fam_feedback = fam_ids
    w.progress("customer_feedback", len(out), len(out))


def build_guard(w: World) -> None:
    rng = w.rng(7)
    k = len(w.families)
    covered = sorted(rng.choice(k, size=round(0.4 * k), replace=False).tolist()) if k else []
    patterns: dict[str, tuple[str, int]] = {}
    for fi in covered:
        _fid, label, guard, texts = w.families[fi]
        patterns[guard] = (f"存在しない制度: {label}", fi)
        extra = [t for t in texts if "{pref}" not in t]
        if len(extra) > 1 and rng.random() < 0.5:
            patterns.setdefault(extra[1].format(fy=w.fy), (f"存在しない制度: {label}", fi))
    pref_names = [p[1] for p in V.PREFECTURES]
    others: list[tuple[str, str]] = []
    for c in V.GUARD_CONCEPTS:
        for t in V.GUARD_TEMPLATES:
            if "{pref}" in t:
                for pi in rng.choice(47, size=3, replace=False).tolist():
                    others.append((t.format(c=c, pref=pref_names[pi], fy=w.fy), c))
            else:
                others.append((t.format(c=c, fy=w.fy), c))
    for j in rng.permutation(len(others)).tolist():
        if len(patterns) >= w.sc.guard_patterns:
            break
        pat, c = others[j]
        patterns.setdefault(pat, (f"対象外: {c}", -1))
    items = list(patterns.items())
    order = rng.permutation(len(items)).tolist()
    launch = w.t_start - 120 * DAY + 2 * 3600
    rows = [(i + 1, items[j][0], items[j][1][0], iso(launch + i * 7), "launch") for i, j in enumerate(order)]
    w.insert("hallucination_guard", ("id", "pattern", "label", "created_at", "source"), rows)
    w.guard_covered = {fi: [p for p, (_lab, f) in items if f == fi] for fi in covered}
    w.progress("hallucination_guard", len(rows), len(rows))


def build_success_events(w: World) -> None:
    rng = w.rng(8)
    sc = w.sc
    progs = w.programs
    pref_p = w.pref_pop / w.pref_pop.sum()
    stable = np.flatnonzero((w.key_created < w.t_start) & (w.key_revoked > w.t_end) & (w.key_tier != "internal"))
    kw = np.where(w.key_paid[stable], 3.0, 1.0)
    kw = kw / kw.sum()
    cands = [p for p in progs if p.tier in ("S", "A")]
    hot: list[tuple[int, int]] = []
    for j in rng.choice(len(cands), size=min(sc.success_hot_groups, len(cands)), replace=False).tolist():
        p = cands[j]
        pref = p.pref if p.pref is not None else int(rng.choice(47, p=pref_p))
        if (p.idx, pref) not in hot:
            hot.append((p.idx, pref))
    ev: list[tuple[int, int, int, int]] = []  # ts, program, pref, consent
    # calendar months (JST) overlapping the window
    d0 = dt.datetime.fromtimestamp(w.t_start, JST).date().replace(day=1)
    while True:
        nxt = (d0.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        m_start = int(dt.datetime(d0.year, d0.month, 1, tzinfo=JST).timestamp())
        m_end = int(dt.datetime(nxt.year, nxt.month, 1, tzinfo=JST).timestamp())
        a, b = max(m_start, w.t_start), min(m_end, w.t_end)
        if a >= w.t_end:
            break
        cover = (b - a) / (m_end - m_start)
        for pidx, pref in hot:
            n_c = (3 + int(rng.poisson(2))) if rng.random() < 0.75 else int(rng.integers(0, 3))
            n_c = int(round(n_c * cover))
            n_nc = int(rng.poisson(1.5 * cover))
            for consent in [1] * n_c + [0] * n_nc:
                ev.append((int(rng.integers(a, b)), pidx, pref, consent))
        d0 = nxt
    tw = np.array([{"S": 6.0, "A": 3.0, "B": 1.0, "C": 0.5}[p.tier] for p in progs])
    n_tail = int(rng.poisson(sc.success_per_day * sc.days))
    for pidx in rng.choice(len(progs), size=n_tail, p=tw / tw.sum()).tolist():
        p = progs[pidx]
        pref = p.pref if p.pref is not None else int(rng.choice(47, p=pref_p))
        ev.append((int(rng.integers(w.t_start, w.t_end)), pidx, pref, int(rng.random() < 0.55)))
    ev.sort()
    rows = []
    for i, (t, pidx, pref, consent) in enumerate(ev, start=1):
        p = progs[pidx]
        outcome = str(rng.choice(["adopted", "applied", "not_adopted"], p=[0.5, 0.3, 0.2]))
        amount = None
        if outcome == "adopted":
            cap = p.amount or 3_000_000
            amount = int(round(cap * rng.uniform(0.2, 1.0), -3))
        rating = int(
            {
                "adopted": rng.choice([4, 5], p=[0.4, 0.6]),
                "applied": rng.choice([3, 4, 5]),
                "not_adopted": rng.choice([1, 2, 3]),
            }[outcome]
        )
        short = V.FLAGSHIPS[p.flagship][1] if p.flagship is not None else "この補助金"
        comments = V.SUCCESS_COMMENTS[outcome]
        comment = comments[int(rng.integers(len(comments)))].format(short=short) if rng.random() < 0.9 else None
        key = w.key_str[stable[int(rng.choice(len(stable), p=kw))]]
        rows.append((i, iso(t), key, p.pid, V.PREFECTURES[pref][0], outcome, amount, rating, comment, consent))
    w.insert(
        "customer_success_events",
        (
            "id",
            "ts",
            "api_key",
            "program_id",
            "prefecture_code",
            "outcome",
            "amount_jpy",
            "rating",
            "comment",
            "consent_flag",
        ),
        rows,
    )
    if rows:
        df = pd.DataFrame(
            {
                "month": [dt.datetime.fromtimestamp(e[0], JST).strftime("%Y-%m") for e in ev],
                "program_id": [r[3] for r in rows],
                "prefecture_code": [r[4] for r in rows],
                "consent": [r[9] for r in rows],
            }
        )
        g = (
            df.groupby(["month", "program_id", "prefecture_code"], sort=True)
            .agg(consented=("consent", "sum"), total=("consent", "size"))
            .reset_index()
        )
        w.truth["success_groups"] = [
            {"month": m, "program_id": pid, "prefecture_code": pc, "consented": int(c), "total": int(t)}
            for m, pid, pc, c, t in g.itertuples(index=False)
        ]
    else:
        w.truth["success_groups"] = []
    w.progress("customer_success_events", len(rows), len(rows))


def build_rounds(w: World) -> None:
    rng = w.rng(9)
    target = w.sc.rounds
    progs = w.programs
    weight = np.array(
        [
            (20.0 if p.flagship is not None else {"national": 3.0, "prefectural": 1.5, "municipal": 0.5}[p.level])
            * {"S": 4.0, "A": 2.0, "B": 1.0, "C": 0.5}[p.tier]
            for p in progs
        ]
    )
    n_rp = min(len(progs), max(1, round(target / 3.8)))
    chosen = sorted(
        rng.choice(len(progs), size=n_rp, replace=False, p=weight / weight.sum()).tolist(), key=lambda i: progs[i].pid
    )
    cw = np.array([{"S": 3.0, "A": 2.0, "B": 1.0, "C": 0.7}[progs[i].tier] for i in chosen])
    counts = 1 + rng.multinomial(target - n_rp, cw / cw.sum())
    bias = rng.normal(FORECAST_POOLED_MEAN, FORECAST_POOLED_SD, n_rp)
    model_start = w.t_end - 900 * DAY
    v2_start = w.t_end - 300 * DAY

    def at_jst(sec: float, hour: int) -> int:
        return jst_midnight(int(sec)) + hour * 3600

    rounds, preds = [], []
    observed: dict[str, list[float]] = {}
    for j, pidx in enumerate(chosen):
        p = progs[pidx]
        c = int(counts[j])
        interval = rng.uniform(90, 240)
        m_future = min(int(rng.integers(0, 3)), c - 1)
        k_past = c - m_future
        anchor = w.t_end - rng.uniform(0.05, 1.0) * interval * DAY
        opens = [anchor - (k_past - 1 - i) * interval * DAY + rng.normal(0, 8) * DAY for i in range(k_past)]
        fut = w.t_end + rng.uniform(0.1, 1.0) * interval * DAY
        opens += [fut + i * interval * DAY for i in range(m_future)]
        for no, o in enumerate(opens, start=1):
            o = at_jst(o, 10)
            close = at_jst(o + rng.uniform(21, 75) * DAY, 17)
            resolved_at = at_jst(close + rng.uniform(1, 5) * DAY, 12)
            if resolved_at <= w.t_end:
                status, res = "resolved", resolved_at
            elif o <= w.t_end:
                status, res = "open", None
            else:
                status, res = "scheduled", None
            rid = f"R{p.pid[1:]}-{no:02d}"
            rounds.append((rid, p.pid, no, iso(o), iso(close), status, iso(res) if res else None))
            for _ in range(int(rng.integers(1, 4))):
                pat = o - rng.uniform(20, 150) * DAY
                if pat < model_start or pat >= w.t_end:
                    continue
                pat = at_jst(pat, 6) + int(rng.integers(0, 3600))
                err = int(round(bias[j] + rng.normal(0, FORECAST_NOISE_SD)))
                preds.append((pat, p.pid, rid, o + err * DAY, "forecast-v2" if pat >= v2_start else "forecast-v1"))
                if status == "resolved":
                    observed.setdefault(p.pid, []).append(err)
    assert len(rounds) == target
    w.insert(
        "am_application_round",
        ("round_id", "program_id", "round_no", "opens_at", "closes_at", "status", "resolved_at"),
        rounds,
    )
    preds.sort()
    w.insert(
        "forecast_predictions",
        ("prediction_id", "program_id", "round_id", "predicted_at", "predicted_opens_at", "model_version"),
        [(f"FP{i:07d}", pid, rid, iso(pat), iso(po), mv) for i, (pat, pid, rid, po, mv) in enumerate(preds, 1)],
    )
    w.truth["forecast_bias_days"] = {progs[pidx].pid: round(float(b), 4) for pidx, b in zip(chosen, bias.tolist())}
    w.truth["pooled_bias_mean"] = FORECAST_POOLED_MEAN
    w.truth["pooled_bias_sd"] = FORECAST_POOLED_SD
    w.truth["forecast_noise_sd_days"] = FORECAST_NOISE_SD
    w.truth["forecast_observed"] = {
        pid: {"n": len(v), "mean_error_days": round(float(np.mean(v)), 4)} for pid, v in sorted(observed.items())
    }
    w.progress("am_application_round", len(rounds), len(rounds))


def build_aliases(w: World) -> None:
    rng = w.rng(10)
    target = w.sc.aliases
    progs = w.programs
    absent: set[str] = set()
    forced: dict[tuple[int, str], str] = {}
    for d in w.planted:
        d["in_am_alias"] = bool(rng.random() < 0.5)
        surface = w.s_text[d["surface_idx"]]
        if d["in_am_alias"]:
            forced[(d["program"], surface)] = d["lang"]
        else:
            absent.add(surface)
    pool_p: list[int] = []
    pool_s: list[str] = []
    pool_l: list[str] = []
    for p in progs:
        for s, lang in alias_pool(p, w.fy, w.reiwa):
            if s in absent or (p.idx, s) in forced:
                continue
            pool_p.append(p.idx)
            pool_s.append(s)
            pool_l.append(lang)
    needed = target - len(forced)
    if needed > len(pool_s) or needed < 0:
        raise RuntimeError(f"alias pool too small: need {needed}, have {len(pool_s)}")
    pp = np.array(pool_p)
    bonus = np.array(
        [{"S": 1.0, "A": 0.4, "B": 0.1, "C": 0.0}[p.tier] + (2.0 if p.flagship is not None else 0.0) for p in progs]
    )[pp]
    bonus = bonus + np.array([0.2 if lang in ("ja", "ja-Kana") else 0.0 for lang in pool_l])
    prio = rng.random(len(pool_s)) + bonus
    take = np.sort(np.argsort(-prio, kind="stable")[:needed])
    entries = [(progs[pool_p[i]].pid, pool_s[i], pool_l[i], False) for i in take.tolist()]
    entries += [(progs[pi].pid, s, lang, True) for (pi, s), lang in forced.items()]
    entries.sort(key=lambda e: (e[0], e[1]))
    launch = w.t_start - 150 * DAY
    created = np.where(
        rng.random(len(entries)) < 0.85,
        launch + rng.integers(0, 6 * 3600, len(entries)),
        rng.integers(launch, w.t_end, len(entries)),
    )
    src_of = {
        "ja": "editorial",
        "ja-Kana": "auto:kana",
        "ja-Latn": "auto:romaji",
        "en": "mt:en",
        "zh": "mt:zh",
        "ko": "mt:ko",
    }
    rows = []
    for i, ((pid, s, lang, is_forced), c) in enumerate(zip(entries, iso_list(created)), start=1):
        src = "editorial" if is_forced else ("import:launch" if c.startswith(iso(launch)[:10]) else src_of[lang])
        rows.append((i, pid, s, lang, src, c))
    w.insert("am_alias", ("alias_id", "entity_id", "surface", "lang", "source", "created_at"), rows)
    w.progress("am_alias", len(rows), len(rows))


def build_errors(w: World) -> None:
    rng = w.rng(11)
    sc = w.sc
    modes = tb.FAILURE_MODES
    n = int(round(sc.errors_per_day * sc.days))
    span = w.t_end - w.t_start
    versions = [w.t_start - 30 * DAY, w.t_start + int(0.4 * span), w.t_start + int(0.75 * span)]
    ts = (
        w.t_start
        + rng.integers(0, sc.days, n) * DAY
        + rng.choice(24, size=n, p=DIURNAL) * 3600
        + rng.integers(0, 3600, n)
    )
    ver = np.searchsorted(np.array(versions[1:]), ts, side="right")
    mode_w = np.array([m.weight for m in modes])
    mode = np.empty(n, dtype=np.int64)
    for v in range(3):
        avail = np.array([m.first_version <= v for m in modes])
        wv = mode_w * avail
        idx = np.flatnonzero(ver == v)
        mode[idx] = rng.choice(len(modes), size=len(idx), p=wv / wv.sum())
    # incidents: bursts of one mode within two hours of one day
    extra_ts, extra_mode = [], []
    for mi, m in enumerate(modes):
        if m.burst:
            day = int(rng.integers(0, sc.days))
            k = max(5, int(0.25 * n * m.weight / mode_w.sum()))
            extra_ts.append(w.t_start + day * DAY + 10 * 3600 + rng.integers(0, 7200, k))
            extra_mode.append(np.full(k, mi))
    if extra_ts:
        ts = np.concatenate([ts] + extra_ts)
        mode = np.concatenate([mode] + extra_mode)
    order = np.lexsort((mode, ts))
    ts, mode = ts[order], mode[order]
    ver = np.searchsorted(np.array(versions[1:]), ts, side="right")
    rows = []
    error_modes, malformed, error_formats = {}, {}, {}
    format_rng = w.rng(1101)
    req = random_hex(rng, len(ts), 20)
    for i, (t, mi, v) in enumerate(zip(ts.tolist(), mode.tolist(), ver.tolist()), start=1):
        m = modes[mi]
        endpoint = m.endpoints[int(rng.integers(len(m.endpoints)))]
        request_id = None if endpoint.startswith("job:") else "req_" + req[i - 1]
        text, etype, msg = tb.render(m, v, rng, request_id)
        u = rng.random()
        if u < 0.03:
            lines = text.rstrip("\n").split("\n")
            cut = int(rng.integers(2, max(3, len(lines) - 1)))
            text = "\n".join(lines[:cut]) + ("\n...[truncated]" if rng.random() < 0.5 else "")
            if rng.random() < 0.5:
                etype, msg = None, None
            malformed[str(i)] = "truncated"
        elif u < 0.04:
            text = text.split("\n", 1)[1]
            malformed[str(i)] = "headless"
        # a separate stream, so adding formats left every other column of the world as it was
        log_format = "plain" if str(i) in malformed else tb.log_format_for(m, float(format_rng.random()))
        text = tb.ship(text, log_format, etype or m.exception_type, iso(t))
        error_formats[str(i)] = log_format
        rows.append((i, iso(t), endpoint, etype, msg, text, request_id))
        error_modes[str(i)] = m.name
    w.insert("error_log", ("id", "ts", "endpoint", "exception_type", "message", "traceback", "request_id"), rows)
    w.truth["failure_modes"] = {m.name: tb.describe(m) for m in modes}
    w.truth["error_modes"] = error_modes
    w.truth["error_malformed"] = malformed
    w.truth["error_formats"] = error_formats
    w.truth["deploy_versions"] = [iso(v) for v in versions]
    w.progress("error_log", len(rows), len(rows))


def build_source_signals(w: World) -> None:
    rng = w.rng(12)
    progs = w.programs
    n = len(progs)
    nights = min(w.sc.scan_days, w.sc.days)
    scan_start = w.t_end - nights * DAY
    fetched = np.array([p.fetched for p in progs], dtype=np.int64)
    offset = rng.integers(0, 7, n)
    changed = rng.random(n) < 0.08
    lo = np.maximum(fetched + 3600, scan_start - 14 * DAY)
    changed &= lo < w.t_end - DAY
    change_at = (lo + rng.random(n) * np.maximum(w.t_end - DAY - lo, 0)).astype(np.int64)
    gone = ~changed & (rng.random(n) < 0.015)
    gone_at = (scan_start + rng.random(n) * (w.t_end - DAY - scan_start)).astype(np.int64)
    noisy = ~changed & ~gone & (rng.random(n) < 0.03)
    prev_mod = fetched - rng.integers(1, 90, n) * DAY
    obs_all, prog_all = [], []
    for j in range(nights):
        idx = np.flatnonzero((j + offset) % 7 == 0)
        night = scan_start + j * DAY + 2 * 3600
        obs_all.append(night + rng.integers(0, 3 * 3600, len(idx)))
        prog_all.append(idx)
    obs = np.concatenate(obs_all)
    pi = np.concatenate(prog_all)
    status = np.full(len(obs), 304)
    lm = prev_mod[pi].copy()
    g = gone[pi] & (obs >= gone_at[pi])
    c = changed[pi] & (obs >= change_at[pi])
    status[noisy[pi]] = 200
    status[c] = 200
    lm[c] = change_at[pi][c]
    transient = ~g & (rng.random(len(obs)) < 0.005)
    status[g] = 404
    status[transient] = 503
    has_lm = ~(g | transient)
    order = np.lexsort((pi, obs))
    urls = [p.url for p in progs]
    pids = [p.pid for p in progs]
    obs_iso = iso_list(obs[order])
    lm_iso = iso_list(lm[order])
    rows = [
        (o, urls[k], pids[k], int(s), m if h else None)
        for o, k, s, m, h in zip(obs_iso, pi[order].tolist(), status[order].tolist(), lm_iso, has_lm[order].tolist())
    ]
    # agency index pages (not tied to a program), scanned every night
    index_urls = sorted(
        {f"https://www.example.go.jp/{slug}/index.html" for _, _, _, _, _, _, _, _, slug, *_ in V.FLAGSHIPS}
    )
    for j in range(nights):
        night = scan_start + j * DAY + 2 * 3600
        for u in index_urls:
            t = night + int(rng.integers(0, 3 * 3600))
            st = 200 if rng.random() < 0.3 else 304
            rows.append((iso(t), u, None, st, iso(jst_midnight(t) - int(rng.integers(0, 5)) * DAY)))
    rows.sort(key=lambda r: (r[0], r[1]))
    w.insert(
        "source_change_signals",
        ("id", "observed_at", "source_url", "program_id", "http_status", "last_modified"),
        [(i, *r) for i, r in enumerate(rows, start=1)],
    )
    w.truth["changed_sources"] = {pids[k]: iso(change_at[k]) for k in np.flatnonzero(changed).tolist()}
    w.truth["gone_sources"] = {pids[k]: iso(gone_at[k]) for k in np.flatnonzero(gone).tolist()}
    w.truth["noisy_sources"] = [pids[k] for k in np.flatnonzero(noisy).tolist()]
    w.progress("source_change_signals", len(rows), len(rows))
