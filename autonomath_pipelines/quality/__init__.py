"""Loop-quality suite: every loop run on a demo world (dry run) and scored against its planted truth.

    autonomath-loops eval [--scale small|medium|production] [--seed 7] [--db PATH] [--out reports/eval]
    .venv/bin/python evals/loop_quality.py ...            (the same, as a script)

What it does:

1. **World.** Builds the demo world (or reuses ``--db`` / the cached ``data/eval/`` world of the same
   scale, seed and as-of), whose ``<db>.truth.json`` holds what each loop should find.
2. **Runs.** Every loop runs once through ``orchestrator.run_loops`` (Dagster, in-process, an
   ephemeral instance, dry run: nothing is written; the database's SHA-256 is checked before and
   after) on a partition chosen from the world's end (``eval_partitions``), with its intermediate
   Parquet in a temporary folder. The candidates (and the work assets a score needs: A's clusters,
   E's clusters, G's groups) are read back from that Parquet storage.
3. **Scores.** Each loop's output against the planted truth, or — where the truth cannot say what is
   right — against an independent recomputation from the raw tables, each with a naive baseline:

   ====  ==========================================================================================
   A     cluster ARI on the planted hallucination families; candidate precision; share of candidates
         that are a new theme; recall of the uncovered families heavy enough to be a theme; covered
         families leaked. Baselines: the
         longest-token grouping, and the top-k suspect texts as patterns (no clustering).
   B     JSON-LD valid (an independent validator, not ``lib/jsonld``); k-anonymity vs the planted
         consented group counts; identifiers and customer text in the pages; eligible groups paged.
   C     next-week replay hit rate of the personal caches vs each customer's 20 most recent distinct
         queries, and vs the global top-20; planted loyal customers served.
   D     held-out MAE (days) of forecasts corrected by the loop vs uncorrected and vs the unpooled
         per-program mean, rolling origin: each month's calibration scored on the rounds resolved in
         the month after it; bias error vs the planted per-program bias.
   E     precision / recall of proposed aliases vs the planted aliases absent from am_alias; language
         accuracy; ARI of the alias sets (planted forms vs noise answers) and of the per-program
         clusters vs the planted intents. Baseline: every surface seen (no clustering).
   F     exact reconciliation: every channel's counts and JPY sums recomputed in pandas from the raw
         tables equal the loop's; the total equals Σ billing_events.
   G     ARI of the error grouping vs the planted failure modes (baseline: group by the logged
         exception type); one stub per planted mode (recall, precision); truncated traces placed.
   H     next-day replay hit rate of the warmed head vs the 200 most recent distinct queries and
         vs the all-time top 200 (upper bound: the next day's own top 200).
   I     Kendall τ and top-N overlap with the priority formula recomputed independently; planted
         changed/gone pages queued vs a staleness-only queue.
   J     precision of the proposed gold rows vs the planted intents (the program each text was
         generated for); agreement with the rule recomputed independently. Baseline: every text
         asked in ≥ 5 sessions, labelled with its most frequent top-1 (no confidence rule).
   ====  ==========================================================================================

4. **Files** in ``--out``: ``loop_quality.md`` (one table: loop, metric, value, baseline, verdict;
   then the notes), ``loop_quality.json`` (every figure and the per-loop details) and
   ``loop_quality.png``. The table and ``metrics``/``details`` are identical for the same world (scale,
   seed, as-of) and code: only timings differ between runs.
"""
