"""Stage 2 of the demo world: customers, their ``api_keys`` and ``subscribers``.

Customers sign up through a marketing channel (``CHANNELS``: each with its own share of sign-ups and
paid rate); some rotate their key (revoked, with a successor) or churn; four internal keys predate
the window. A few paid, stable customers are loyal (their queries come from a favourites list, see
``traffic``); every key gets a session weight for the query log. Subscribers are one per customer plus
sign-ups that never created a key.
"""

from __future__ import annotations

import numpy as np

from autonomath_pipelines.contract.timestamps import iso_from_epoch as iso
from autonomath_pipelines.demo.common import DAY, World, random_hex

CHANNELS: tuple[tuple[str | None, float, float], ...] = (
    ("google", 0.28, 0.20),
    ("x", 0.14, 0.07),
    ("note", 0.10, 0.15),
    ("qiita", 0.09, 0.32),
    ("newsletter", 0.07, 0.38),
    ("partner_freee", 0.05, 0.42),
    ("partner_moneyforward", 0.04, 0.36),
    ("partner_smarthr", 0.03, 0.25),
    (None, 0.12, 0.12),
    ("", 0.08, 0.10),
)


def _unique_hex(rng: np.random.Generator, n: int, width: int, prefix: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        for h in random_hex(rng, n - len(out), width):
            if h not in seen:
                seen.add(h)
                out.append(prefix + h)
    return out


def build_customers(w: World) -> None:
    rng = w.rng(2)
    sc = w.sc
    n_internal = 4
    n_cust = round((sc.api_keys - n_internal) / 1.04)
    n_rot = sc.api_keys - n_internal - n_cust
    ch_w = np.array([c[1] for c in CHANNELS])
    channel = rng.choice(len(CHANNELS), size=n_cust, p=ch_w / ch_w.sum())
    paid = rng.random(n_cust) < np.array([CHANNELS[c][2] for c in channel.tolist()])
    in_window = rng.random(n_cust) < 0.22
    age_days = np.where(in_window, rng.uniform(0.5, sc.days, n_cust), sc.days + rng.uniform(0, 480, n_cust) ** 1.0)
    created = (w.t_end - age_days * DAY).astype(np.int64)
    rotated = np.zeros(n_cust, dtype=bool)
    rotated[rng.choice(n_cust, size=n_rot, replace=False)] = True
    churned = (~rotated) & (rng.random(n_cust) < 0.03)
    change_at = (created + rng.uniform(0.2, 0.95, n_cust) * (w.t_end - created)).astype(np.int64)

    cust_ids = _unique_hex(rng, n_cust, 12, "cus_")
    sub_ids = _unique_hex(rng, n_cust + n_cust // 12 + 1, 12, "sub_")
    key_strs = _unique_hex(rng, sc.api_keys, 30, "")
    keys: list[dict] = []
    cust_keys: list[list[int]] = []
    for i in range(n_cust):
        tier = "paid" if paid[i] else "free"
        k1 = {
            "key": "am_" + key_strs[len(keys)][:28],
            "customer": i,
            "tier": tier,
            "created": int(created[i]),
            "revoked": None,
            "successor": -1,
        }
        keys.append(k1)
        ks = [len(keys) - 1]
        if rotated[i] or churned[i]:
            k1["revoked"] = int(change_at[i])
        if rotated[i]:
            keys.append(
                {
                    "key": "am_" + key_strs[len(keys)][:28],
                    "customer": i,
                    "tier": tier,
                    "created": int(change_at[i]),
                    "revoked": None,
                    "successor": -1,
                }
            )
            k1["successor"] = len(keys) - 1
            ks.append(len(keys) - 1)
        cust_keys.append(ks)
    internal_created = w.t_start - 400 * DAY
    for j in range(n_internal):
        keys.append(
            {
                "key": "am_int_" + key_strs[len(keys)][:24],
                "customer": -1,
                "tier": "internal",
                "created": internal_created + j * 3600,
                "revoked": None,
                "successor": -1,
            }
        )
    w.keys = keys
    w.cust_ids = cust_ids
    nk = len(keys)
    w.key_str = np.array([k["key"] for k in keys], dtype=object)
    w.key_tier = np.array([k["tier"] for k in keys], dtype=object)
    w.key_created = np.array([k["created"] for k in keys], dtype=np.int64)
    w.key_revoked = np.array([k["revoked"] if k["revoked"] is not None else 1 << 62 for k in keys], dtype=np.int64)
    w.key_successor = np.array([k["successor"] for k in keys], dtype=np.int64)
    w.key_paid = w.key_tier == "paid"

    # loyal customers: paid, active for the whole window, one key
    eligible = [
        i for i in range(n_cust) if paid[i] and not rotated[i] and not churned[i] and created[i] < w.t_start - DAY
    ]
    n_loyal = min(sc.loyal_customers, len(eligible))
    w.loyal_cust = sorted(rng.choice(eligible, size=n_loyal, replace=False).tolist())
    w.loyal_keys = [cust_keys[c][0] for c in w.loyal_cust]

    # session weight per key
    weight = np.where(w.key_paid, rng.lognormal(1.0, 1.0, nk), rng.lognormal(-0.7, 1.0, nk))
    weight[w.key_tier == "internal"] = 0.3
    weight[w.loyal_keys] = 0.0
    loyal_share = 0.12 if n_loyal else 0.0
    if n_loyal:
        weight[w.loyal_keys] = loyal_share / (1 - loyal_share) * weight.sum() / n_loyal * rng.uniform(0.6, 1.4, n_loyal)
    w.key_weight = weight / weight.sum()

    key_rows = [
        (
            k["key"],
            cust_ids[k["customer"]] if k["customer"] >= 0 else "cus_internal",
            k["tier"],
            iso(k["created"]),
            iso(k["revoked"]) if k["revoked"] is not None else None,
        )
        for k in keys
    ]
    w.insert("api_keys", ("api_key", "customer_id", "tier", "created_at", "revoked_at"), sorted(key_rows))

    # subscribers: one per customer (+ sign-ups that never created a key)
    subs = []
    cust_sub = []
    for i in range(n_cust):
        current = keys[cust_keys[i][-1]]
        ch = CHANNELS[channel[i]][0]
        signed = int(created[i]) - int(rng.integers(60, 1800))
        subs.append((sub_ids[i], current["key"], ch, iso(signed), "paid" if paid[i] else "free"))
        cust_sub.append(sub_ids[i])
    n_nokey = n_cust // 12
    nk_channel = rng.choice(len(CHANNELS), size=n_nokey, p=ch_w / ch_w.sum())
    nk_signed = (w.t_end - rng.uniform(0.2, sc.days + 300, n_nokey) * DAY).astype(np.int64)
    for j in range(n_nokey):
        subs.append((sub_ids[n_cust + j], None, CHANNELS[nk_channel[j]][0], iso(nk_signed[j]), "free"))
    w.insert("subscribers", ("subscriber_id", "api_key", "utm_source", "signed_up_at", "plan"), sorted(subs))
    w.key_sub = np.array([cust_sub[k["customer"]] if k["customer"] >= 0 else None for k in keys], dtype=object)
    w.truth["channels"] = {
        ("(null)" if c is None else "(empty)" if c == "" else c): {"signup_weight": w_, "paid_rate": r_}
        for c, w_, r_ in CHANNELS
    }
    w.progress("api_keys", nk, nk)
