-- AutonoMath data contract: every table the ten loops read (sources) or write (outputs).
--
-- Conventions
--   * Timestamps are ISO-8601 UTC text, 'YYYY-MM-DDTHH:MM:SSZ', so string comparison is time order.
--   * Output tables carry provenance: loop_id, run_id (Dagster run id), partition_key,
--     code_version, model_name (where a model was used), evidence_json, status.
--   * Sections are delimited by the "-- @sources" / "-- @outputs" / "-- @review" markers; the preflight and the
--     publish steps read them (autonomath_pipelines/schema.py).
--   * Every statement is idempotent (IF NOT EXISTS) so the file can be applied to an existing db.

-- @sources ---------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS prefectures (
    prefecture_code TEXT PRIMARY KEY,          -- JIS X 0401, '01'..'47'
    name_ja         TEXT NOT NULL,             -- 北海道, 東京都, ...
    name_en         TEXT NOT NULL,
    region          TEXT NOT NULL              -- 関東, 近畿, ...
);

CREATE TABLE IF NOT EXISTS programs (
    program_id        TEXT PRIMARY KEY,        -- e.g. 'P000123'
    name              TEXT NOT NULL,
    summary           TEXT NOT NULL,
    agency            TEXT NOT NULL,           -- 経済産業省, 東京都産業労働局, ...
    level             TEXT NOT NULL CHECK (level IN ('national', 'prefectural', 'municipal')),
    prefecture_code   TEXT REFERENCES prefectures(prefecture_code),  -- NULL for national
    municipality      TEXT,                    -- NULL unless level = 'municipal'
    category          TEXT NOT NULL,           -- 設備投資, IT導入, 創業, ...
    max_amount_jpy    INTEGER,
    tier              TEXT NOT NULL CHECK (tier IN ('S', 'A', 'B', 'C')),  -- editorial importance
    source_url        TEXT NOT NULL,
    source_fetched_at TEXT NOT NULL,           -- only a real fetch may change this (loop I never does)
    updated_at        TEXT NOT NULL
);

-- Full-text index over programs. trigram: Japanese has no spaces, so n-grams instead of words.
CREATE VIRTUAL TABLE IF NOT EXISTS programs_fts USING fts5(
    program_id UNINDEXED,
    name,
    summary,
    agency,
    region,                                    -- prefecture / municipality names
    tokenize = 'trigram'
);

CREATE TABLE IF NOT EXISTS api_keys (
    api_key     TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    tier        TEXT NOT NULL CHECK (tier IN ('free', 'paid', 'internal')),
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE IF NOT EXISTS query_log (
    id              INTEGER PRIMARY KEY,
    ts              TEXT NOT NULL,
    api_key         TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    query_text      TEXT NOT NULL,
    top1_program_id TEXT,                      -- NULL when result_count = 0
    confidence      REAL NOT NULL,             -- 0..1, the service's confidence in top-1
    result_count    INTEGER NOT NULL,
    latency_ms      REAL NOT NULL,
    tier            TEXT NOT NULL              -- tier of the key at request time
);
CREATE INDEX IF NOT EXISTS query_log_ts ON query_log(ts);
CREATE INDEX IF NOT EXISTS query_log_key_ts ON query_log(api_key, ts);

CREATE TABLE IF NOT EXISTS customer_feedback (
    id           INTEGER PRIMARY KEY,
    ts           TEXT NOT NULL,
    api_key      TEXT NOT NULL,
    session_id   TEXT,
    query_text   TEXT,
    program_id   TEXT,                         -- the program the customer was shown, if any
    wrong_answer INTEGER NOT NULL CHECK (wrong_answer IN (0, 1)),
    comment      TEXT
);
CREATE INDEX IF NOT EXISTS customer_feedback_ts ON customer_feedback(ts);

CREATE TABLE IF NOT EXISTS hallucination_guard (
    id         INTEGER PRIMARY KEY,
    pattern    TEXT NOT NULL UNIQUE,
    label      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    source     TEXT NOT NULL                   -- 'launch', 'promoted:<candidate id>'
);

CREATE TABLE IF NOT EXISTS customer_success_events (
    id              INTEGER PRIMARY KEY,
    ts              TEXT NOT NULL,
    api_key         TEXT NOT NULL,
    program_id      TEXT NOT NULL,
    prefecture_code TEXT NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('adopted', 'applied', 'not_adopted')),
    amount_jpy      INTEGER,                   -- granted amount when adopted
    rating          INTEGER CHECK (rating BETWEEN 1 AND 5),
    comment         TEXT,
    consent_flag    INTEGER NOT NULL CHECK (consent_flag IN (0, 1))
);
CREATE INDEX IF NOT EXISTS customer_success_events_ts ON customer_success_events(ts);

CREATE TABLE IF NOT EXISTS am_application_round (
    round_id    TEXT PRIMARY KEY,
    program_id  TEXT NOT NULL,
    round_no    INTEGER NOT NULL,
    opens_at    TEXT NOT NULL,                 -- actual (or announced, until resolved) opening
    closes_at   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('scheduled', 'open', 'resolved')),
    resolved_at TEXT                           -- when opens_at/closes_at became final
);

CREATE TABLE IF NOT EXISTS forecast_predictions (
    prediction_id      TEXT PRIMARY KEY,
    program_id         TEXT NOT NULL,
    round_id           TEXT NOT NULL,
    predicted_at       TEXT NOT NULL,
    predicted_opens_at TEXT NOT NULL,
    model_version      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS am_alias (
    alias_id   INTEGER PRIMARY KEY,
    entity_id  TEXT NOT NULL,                  -- program_id
    surface    TEXT NOT NULL,
    lang       TEXT NOT NULL,                  -- ja, ja-Kana, ja-Latn, en, zh, ko
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (entity_id, surface)
);
CREATE INDEX IF NOT EXISTS am_alias_surface ON am_alias(surface);

CREATE TABLE IF NOT EXISTS subscribers (
    subscriber_id TEXT PRIMARY KEY,
    api_key       TEXT,
    utm_source    TEXT,                        -- NULL/'' = unknown channel
    signed_up_at  TEXT NOT NULL,
    plan          TEXT NOT NULL CHECK (plan IN ('free', 'paid'))
);

CREATE TABLE IF NOT EXISTS billing_events (
    id            INTEGER PRIMARY KEY,
    ts            TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    api_key       TEXT,
    event_type    TEXT NOT NULL CHECK (event_type IN ('charge', 'refund')),
    amount_jpy    INTEGER NOT NULL             -- positive; refunds are netted by event_type
);
CREATE INDEX IF NOT EXISTS billing_events_ts ON billing_events(ts);

CREATE TABLE IF NOT EXISTS error_log (
    id             INTEGER PRIMARY KEY,
    ts             TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    exception_type TEXT,
    message        TEXT,
    traceback      TEXT NOT NULL,
    request_id     TEXT
);
CREATE INDEX IF NOT EXISTS error_log_ts ON error_log(ts);

CREATE TABLE IF NOT EXISTS source_change_signals (
    id            INTEGER PRIMARY KEY,
    observed_at   TEXT NOT NULL,
    source_url    TEXT NOT NULL,
    program_id    TEXT,
    http_status   INTEGER NOT NULL,            -- 200 changed, 304 not modified, 404 gone, ...
    last_modified TEXT
);
CREATE INDEX IF NOT EXISTS source_change_signals_observed ON source_change_signals(observed_at);

-- @outputs ---------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS hallucination_guard_candidates (
    candidate_id  INTEGER PRIMARY KEY,
    pattern       TEXT NOT NULL,
    label         TEXT NOT NULL,
    cluster_size  INTEGER NOT NULL,
    score         REAL,
    evidence_json TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending_review',
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    model_name    TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (partition_key, pattern)
);

CREATE TABLE IF NOT EXISTS seo_testimonial_candidates (
    candidate_id    INTEGER PRIMARY KEY,
    program_id      TEXT NOT NULL,
    prefecture_code TEXT NOT NULL,
    page_path       TEXT NOT NULL,             -- site/blog/case-<program>-<prefecture>.md
    markdown        TEXT NOT NULL,
    jsonld          TEXT NOT NULL,
    group_size      INTEGER NOT NULL,
    evidence_json   TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending_review',
    loop_id         TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    code_version    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (partition_key, program_id, prefecture_code)
);

CREATE TABLE IF NOT EXISTS personalized_cache (
    customer_id   TEXT NOT NULL,
    query_hash    TEXT NOT NULL,
    query_text    TEXT NOT NULL,
    payload_json  TEXT NOT NULL,
    computed_at   TEXT NOT NULL,
    ttl_until     TEXT NOT NULL,
    evidence_json TEXT NOT NULL,
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    PRIMARY KEY (customer_id, query_hash)
);

CREATE TABLE IF NOT EXISTS forecast_calibration (
    program_id    TEXT NOT NULL,
    coef_json     TEXT NOT NULL,
    computed_at   TEXT NOT NULL,
    evidence_json TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending_review',
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    PRIMARY KEY (program_id, partition_key)
);

CREATE TABLE IF NOT EXISTS alias_candidates (
    candidate_id  INTEGER PRIMARY KEY,
    entity_id     TEXT NOT NULL,
    surface       TEXT NOT NULL,
    lang          TEXT NOT NULL,
    source        TEXT NOT NULL,
    score         REAL NOT NULL,
    evidence_json TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending_review',
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    model_name    TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (entity_id, surface)
);

CREATE TABLE IF NOT EXISTS channel_roi (
    channel         TEXT NOT NULL,
    signups_28d     INTEGER NOT NULL,
    paid_28d        INTEGER NOT NULL,
    revenue_28d_jpy INTEGER NOT NULL,
    computed_at     TEXT NOT NULL,
    window_start    TEXT NOT NULL,
    window_end      TEXT NOT NULL,
    loop_id         TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    partition_key   TEXT NOT NULL,
    code_version    TEXT NOT NULL,
    PRIMARY KEY (channel, partition_key)
);

-- Served by the API before it runs FTS5: a hit returns payload_json as is.
CREATE TABLE IF NOT EXISTS query_cache (
    query_hash    TEXT PRIMARY KEY,            -- sha256 of the normalized query text
    query_text    TEXT NOT NULL,               -- normalized
    payload_json  TEXT NOT NULL,
    computed_at   TEXT NOT NULL,
    ttl_until     TEXT NOT NULL,
    evidence_json TEXT NOT NULL,
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS query_cache_partition ON query_cache(partition_key);

CREATE TABLE IF NOT EXISTS source_refetch_queue (
    source_url    TEXT NOT NULL,
    program_id    TEXT,
    priority      REAL NOT NULL,
    reason        TEXT NOT NULL,
    queued_at     TEXT NOT NULL,
    evidence_json TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending_review',
    loop_id       TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    code_version  TEXT NOT NULL,
    PRIMARY KEY (source_url, partition_key)
);

-- @review ----------------------------------------------------------------------------------------
-- The operator's side (autonomath_pipelines/review): review decisions, promotions and their audit
-- trail. Written only by `autonomath-loops review` / the review job, never by a loop.

-- Review status of candidates that live in files (loop G stubs, loop J gold proposals); table-backed
-- candidates (A, B, E) keep their status in their own table.
CREATE TABLE IF NOT EXISTS review_file_candidates (
    loop_id       TEXT NOT NULL,
    candidate_ref TEXT NOT NULL,               -- G: '<failure_mode>'; J: '<YYYY-MM>/<item id>'
    status        TEXT NOT NULL,
    proposed_at   TEXT NOT NULL,               -- when the candidate file was written
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (loop_id, candidate_ref)
);

-- One row per promotion: the exact prior and new state of everything it touched, so a rollback
-- restores the production table rows or file text exactly.
CREATE TABLE IF NOT EXISTS review_promotions (
    promotion_id   INTEGER PRIMARY KEY,
    promoted_at    TEXT NOT NULL,
    actor          TEXT NOT NULL,
    loop_id        TEXT NOT NULL,
    target         TEXT NOT NULL,              -- 'table:hallucination_guard', 'file:evals/gold.yaml', ...
    candidate_refs TEXT NOT NULL,              -- JSON list of candidate ids ('A:12', ...)
    before_json    TEXT NOT NULL,              -- JSON: rows by key / file texts (null = absent)
    after_json     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('applied', 'rolled_back')),
    rolled_back_at TEXT,
    rolled_back_by TEXT,
    dagster_run_id TEXT
);

-- Every status change, promotion and rollback: who, when, what, before/after.
CREATE TABLE IF NOT EXISTS review_audit_log (
    audit_id       INTEGER PRIMARY KEY,
    ts             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL CHECK (action IN ('approve', 'reject', 'promote', 'rollback')),
    loop_id        TEXT NOT NULL,
    candidate_id   TEXT,                       -- 'A:12', 'J:2026-10/cand-…'; NULL for a rollback row
    from_status    TEXT,
    to_status      TEXT,
    reason         TEXT,
    proposed_at    TEXT,                       -- the candidate's creation time (review delay)
    promotion_id   INTEGER,
    dagster_run_id TEXT,
    detail_json    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS review_audit_log_ts ON review_audit_log(ts);
