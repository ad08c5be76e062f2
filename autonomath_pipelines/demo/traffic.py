"""Stages 4 and 5 of the demo world: the search traffic (``query_log``) and what it costs (``billing_events``).

Sessions of a few queries minutes apart, on weekday-weighted days and business hours (``DIURNAL``),
from keys drawn by their session weight; each query is an intent drawn by Zipf (refinements repeat
the previous one), then one of its surface forms; loyal customers ask from their favourites. The
service's answer (top-1 program, confidence, result count, latency) depends on the surface: canonical
names are confident, typos and planted foreign forms are not, hallucination asks find nothing or a
decoy; a little wrong-answer noise on top. Paid keys are billed per JST day, with a few refunds.
"""

from __future__ import annotations

import numpy as np

from autonomath_pipelines.demo.common import (
    CANON,
    CATEGORY,
    DAY,
    DIURNAL,
    HALL,
    NAME,
    PARA,
    SHORT,
    TOPIC,
    TYPO,
    WIDTH,
    World,
    iso_list,
    random_hex,
)


def build_query_log(w: World) -> None:
    rng = w.rng(4)
    sc = w.sc
    n_int = len(w.int_p)
    nk = len(w.keys)
    r_target = sc.days * sc.queries_per_day
    # sessions: a key, a start time, a handful of queries minutes apart
    lengths = np.minimum(rng.geometric(0.4, int(r_target / 2.5 * 1.2) + 100), 30)
    cs = np.cumsum(lengths)
    n_sess = int(np.searchsorted(cs, r_target)) + 1
    lengths = lengths[:n_sess].copy()
    lengths[-1] -= int(cs[n_sess - 1] - r_target)
    day_start = w.t_start + np.arange(sc.days, dtype=np.int64) * DAY
    weekday = ((day_start + 9 * 3600) // DAY + 3) % 7  # Mon = 0
    wd = np.where(weekday == 5, 0.55, np.where(weekday == 6, 0.45, 1.0)) * rng.lognormal(0, 0.08, sc.days)
    sess_day = rng.choice(sc.days, size=n_sess, p=wd / wd.sum())
    sess_hour = rng.choice(24, size=n_sess, p=DIURNAL)
    start = day_start[sess_day] + sess_hour * 3600 + rng.integers(0, 3600, n_sess)
    sess_key = rng.choice(nk, size=n_sess, p=w.key_weight)
    succ = w.key_successor[sess_key]
    moved = (start >= w.key_revoked[sess_key]) & (succ >= 0)
    sess_key[moved] = succ[moved]
    bad = (start < w.key_created[sess_key]) | (start >= w.key_revoked[sess_key])
    stable = np.flatnonzero((w.key_created < w.t_start) & (w.key_revoked > w.t_end))
    ws = w.key_weight[stable]
    sess_key[bad] = stable[rng.choice(len(stable), size=int(bad.sum()), p=ws / ws.sum())]
    sess_str = np.array(["s_" + h for h in random_hex(rng, n_sess, 16)], dtype=object)
    w.progress("query_log", 0, r_target)

    n = int(lengths.sum())
    row_sess = np.repeat(np.arange(n_sess), lengths)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    pos = np.arange(n) - first[row_sess]
    gaps = rng.exponential(40.0, n) + 2.0
    gaps[first] = 0.0
    cg = np.cumsum(gaps)
    ts = start[row_sess] + (cg - cg[first][row_sess]).astype(np.int64)

    # what is searched: Zipf over intents, refinements within a session, then a surface form
    intent = rng.choice(n_int, size=n, p=w.int_p)
    sticky = np.flatnonzero((pos > 0) & (rng.random(n) < 0.35))
    intent[sticky] = intent[sticky - 1]
    surf = np.searchsorted(w.s_cum, intent + rng.random(n), side="right")
    last_surface = np.r_[w.int_canon_surface[1:], len(w.s_int)] - 1
    surf = np.minimum(surf, last_surface[intent])

    # loyal customers: a fixed favourites list
    row_key = sess_key[row_sess]
    head = [i for i in range(min(n_int, 400)) if w.int_kind[i] != HALL]
    head_w = 1.0 / (np.arange(len(head)) + 5.0)
    w.loyal_truth = []
    for c, k in zip(w.loyal_cust, w.loyal_keys):
        n_fav = int(rng.integers(8, 21))
        fav_int = [head[j] for j in rng.choice(len(head), size=n_fav, replace=False, p=head_w / head_w.sum()).tolist()]
        fav = []
        for i in fav_int:
            lo, hi = w.int_canon_surface[i], last_surface[i]
            cands = [s_ for s_ in range(lo, hi + 1) if w.s_kind[s_] in (PARA, WIDTH)]
            fav.append(cands[int(rng.integers(len(cands)))] if cands and rng.random() < 0.2 else lo)
        fav = np.array(fav)
        fw = (np.arange(n_fav) + 1.0) ** -0.7
        rows_k = np.flatnonzero(row_key == k)
        use = rows_k[rng.random(len(rows_k)) < 0.85]
        surf[use] = fav[rng.choice(n_fav, size=len(use), p=fw / fw.sum())]
        w.loyal_truth.append(
            {
                "customer_id": w.cust_ids[c],
                "api_key": w.keys[k]["key"],
                "favourites": [w.s_text[s_] for s_ in fav.tolist()],
                "favourite_share": 0.85,
            }
        )
    intent = w.s_int[surf]

    # the service's answer
    skind = w.s_kind[surf]
    ikind = w.int_kind[intent]
    top1 = w.int_prog[intent].copy()
    u = rng.random(n)
    lo = np.full(n, 0.62)
    hi = np.full(n, 0.90)
    rc = 1 + rng.poisson(1.2, n)
    named = (ikind == NAME) | (ikind == SHORT)
    canon = skind == CANON
    lo[named & canon], hi[named & canon] = 0.85, 0.99
    lo[named & (skind == WIDTH)], hi[named & (skind == WIDTH)] = 0.82, 0.97
    topic = ikind == TOPIC
    cat = ikind == CATEGORY
    m = topic & ((skind == CANON) | (skind == WIDTH))
    lo[m], hi[m] = 0.60, 0.88
    m = cat & ((skind == CANON) | (skind == WIDTH))
    lo[m], hi[m] = 0.55, 0.85
    rc[topic] = 3 + rng.poisson(12, int(topic.sum()))
    rc[cat] = 5 + rng.poisson(20, int(cat.sum()))
    typo = skind == TYPO
    lo[typo], hi[typo] = 0.50, 0.80
    rc[typo] = 1 + rng.poisson(3, int(typo.sum()))
    single = np.zeros(len(w.s_int), dtype=bool)
    single[[d["surface_idx"] for d in w.planted]] = True
    low = single[surf]
    lo[low], hi[low] = 0.20, 0.49
    rc[low] = np.where(rng.random(int(low.sum())) < 0.85, 1, 2)
    conf = lo + (hi - lo) * u
    # wrong top-1 noise
    wrong = (ikind != HALL) & ~low & (rng.random(n) < 0.015)
    top1[wrong] = rng.integers(0, len(w.programs), int(wrong.sum()))
    conf[wrong] = rng.uniform(0.3, 0.8, int(wrong.sum()))
    # hallucination-prone asks: nothing found, or a low-confidence decoy among several results
    w.decoys = rng.integers(0, len(w.programs), size=(max(1, len(w.families)), 3))
    hall = np.flatnonzero(ikind == HALL)
    zero = rng.random(len(hall)) < 0.6
    hz, hd = hall[zero], hall[~zero]
    rc[hz], top1[hz], conf[hz] = 0, -1, 0.0
    fam = w.int_family[intent[hd]]
    top1[hd] = w.decoys[fam, rng.integers(0, 3, len(hd))]
    rc[hd] = rng.integers(2, 13, len(hd))
    conf[hd] = rng.uniform(0.08, 0.45, len(hd))
    latency = rng.lognormal(np.log(28.0), 0.45, n) * np.where(rc == 0, 0.6, 1.0) * np.where(topic | cat, 1.3, 1.0)
    slow = rng.random(n) < 0.005
    latency[slow] *= rng.uniform(5, 20, int(slow.sum()))

    keep = ts < w.t_end
    order = np.flatnonzero(keep)[np.argsort(ts[keep], kind="stable")]
    w.q_ts = ts[order]
    w.q_key = row_key[order]
    w.q_sess = row_sess[order]
    w.q_surf = surf[order]
    w.q_intent = intent[order]
    w.q_top1 = top1[order]
    w.q_conf = np.round(conf[order], 4)
    w.q_rc = rc[order]
    latency = np.round(latency[order], 1)
    w.sess_str = sess_str
    total = len(order)
    pid_arr = np.array([p.pid for p in w.programs] + [None], dtype=object)
    top1_idx = np.where(w.q_top1 < 0, len(w.programs), w.q_top1)
    chunk = 100_000
    for a in range(0, total, chunk):
        b = min(total, a + chunk)
        rows = zip(
            range(a + 1, b + 1),
            iso_list(w.q_ts[a:b]),
            w.key_str[w.q_key[a:b]].tolist(),
            sess_str[w.q_sess[a:b]].tolist(),
            w.s_text[w.q_surf[a:b]].tolist(),
            pid_arr[top1_idx[a:b]].tolist(),
            w.q_conf[a:b].tolist(),
            w.q_rc[a:b].tolist(),
            latency[a:b].tolist(),
            w.key_tier[w.q_key[a:b]].tolist(),
        )
        w.insert(
            "query_log",
            (
                "id",
                "ts",
                "api_key",
                "session_id",
                "query_text",
                "top1_program_id",
                "confidence",
                "result_count",
                "latency_ms",
                "tier",
            ),
            rows,
        )
        w.progress("query_log", b, total)


def build_billing(w: World) -> None:
    rng = w.rng(5)
    days = w.sc.days
    nk = len(w.keys)
    paid = w.key_paid[w.q_key]
    k = w.q_key[paid]
    d = (w.q_ts[paid] - w.t_start) // DAY
    cnt = np.bincount(k * days + d, minlength=nk * days)
    nz = np.flatnonzero(cnt)
    # aggregated per JST day, booked at 23:55 JST; ordered by time, then key
    nz = nz[np.lexsort((nz // days, nz % days))]
    kk, dd, nn = nz // days, nz % days, cnt[nz]
    ts = w.t_start + dd * DAY + 23 * 3600 + 55 * 60
    events = [
        (int(t), w.key_sub[a], w.key_str[a], "charge", 3 * int(c))
        for t, a, c in zip(ts.tolist(), kk.tolist(), nn.tolist())
    ]
    refund = np.flatnonzero(rng.random(len(nz)) < 0.015)
    r_ts = ts[refund] + rng.integers(1, 10, len(refund)) * DAY + rng.integers(-6 * 3600, 0, len(refund))
    for j, t in zip(refund.tolist(), r_ts.tolist()):
        if t < w.t_end:
            events.append((int(t), w.key_sub[kk[j]], w.key_str[kk[j]], "refund", 3 * int(rng.integers(1, nn[j] + 1))))
    events.sort(key=lambda e: (e[0], e[2], e[3]))
    iso_ts = iso_list(np.array([e[0] for e in events], dtype=np.int64))
    w.insert(
        "billing_events",
        ("id", "ts", "subscriber_id", "api_key", "event_type", "amount_jpy"),
        [(i + 1, t, e[1], e[2], e[3], e[4]) for i, (t, e) in enumerate(zip(iso_ts, events))],
    )
    w.progress("billing_events", len(events), len(events))
