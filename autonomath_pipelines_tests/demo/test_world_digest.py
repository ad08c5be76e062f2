"""The demo world's bytes are pinned: a given ``(scale, seed, as_of)`` builds exactly these rows and truth.

Every table of the built database (source, output, FTS5 and its shadow tables, ``sqlite_stat*``,
``sqlite_master``) is hashed row by row, and so is the truth sidecar without
``built_by.generator_digest`` (that one hashes the generator's sources, so any edit changes it).
A refactoring of the generator must leave every pin as it is.

A deliberate change to what the generator builds changes the pins: print fresh ones with
``PYTHONPATH=. python -m autonomath_pipelines_tests.demo.test_world_digest`` and paste them over ``PINS``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest

from autonomath_pipelines.contract.sqlite import sqlite3
from autonomath_pipelines.demo import build_world, truth_path

AS_OF = dt.date(2026, 11, 21)
#: (scale, seed) of each pinned world: the small one every test uses, and the medium one (~15 s).
WORLDS = (("small", 7), ("medium", 3))


def table_digests(db: Path) -> dict[str, str]:
    """SHA-256 of each table's rows as stored (text as bytes), in rowid order, or ordered by every
    column for ``WITHOUT ROWID`` tables (FTS5's ``_config`` and ``_idx``)."""
    conn = sqlite3.connect(str(db))
    conn.text_factory = bytes
    try:
        names = [
            r[0].decode() for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        out = {}
        for table in ["sqlite_master", *names]:
            try:
                rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
            except sqlite3.OperationalError:  # no rowid
                width = len(conn.execute(f'SELECT * FROM "{table}" LIMIT 0').description)
                order = ", ".join(str(i) for i in range(1, width + 1))
                rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
            h = hashlib.sha256()
            for row in rows:
                h.update(repr(row).encode())
            out[table] = h.hexdigest()
        return out
    finally:
        conn.close()


def truth_digest(db: Path) -> str:
    """SHA-256 of the truth sidecar as written, less ``built_by.generator_digest``."""
    truth = json.loads(truth_path(db).read_text(encoding="utf-8"))
    del truth["built_by"]["generator_digest"]
    return hashlib.sha256(json.dumps(truth, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def world_digests(db: Path) -> dict:
    return {"tables": table_digests(db), "truth": truth_digest(db)}


#: What the generator builds for each of ``WORLDS`` (printed by this module run as a script).
PINS: dict[tuple[str, int], dict] = {
    ("small", 7): {
        "tables": {
            "sqlite_master": "8a111e71fb8fc7e41819e9722a3cf114e35d26d459f92838493492883b1449b6",
            "alias_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "am_alias": "7dcbfa57d38fd39f3db338daa8f8fbc581f0d93999bc1f114b462309f4286083",
            "am_application_round": "319cf4266220d4b6bb86bc94f7e753799e9995e1fb0a9f12764e13b7c506a41f",
            "api_keys": "d1b954a0e14ed9727abff307b563c2a6656ebcd23a23a9e476861c23df83b8ff",
            "billing_events": "c8cef168bfa853ab6e2bb56dbb2b9cde84e0dfc7abf40e9bb5b4569ae1d1b092",
            "channel_roi": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "customer_feedback": "d4ca8d02063cef555479fa48e212fdbbca76a50cbaffe0233bc41db398e1d3ed",
            "customer_success_events": "6f804990fc20959e912b7d8dd2e7d0b95d16db731c709e7a3762bd7cc204b8cb",
            "error_log": "2e11f091037abd3a3b4c450f6444bd67a723feb4f7c29d7873a8aa2668323bb8",
            "forecast_calibration": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "forecast_predictions": "caf4b7911b80346b9bd71908bf510f3572d63a585a178c499dbc0ee99d6167ae",
            "hallucination_guard": "4e20b34ae7f531e5c4f975e69b6ae9d77e56063ca9e584228703f13a828abf68",
            "hallucination_guard_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "personalized_cache": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "prefectures": "3f6d7e8a04c0d03a1fd2d5d3fafb938be8548733d772ed83cbc2a5078403b6a7",
            "programs": "c1caf83a7a8ba6d5236f08398a8534c4c7b0031dab71055965112d74879b1d11",
            "programs_fts": "b9879a00b657032a461c08a004dd85367bbb65db010b5fbecc8eaf5e249e6643",
            "programs_fts_config": "02ecde2e3947cc532bbf60dbf81b8bd9a41a31809d479a38ac7b2e84fd68d175",
            "programs_fts_content": "c59808cb19dee41e3fbd9b10c412bc559c59000b30c832b9f12e95a494325d72",
            "programs_fts_data": "c368a1532770695535f3a03664e3bce361193723401169f4d5414d5f64a839b2",
            "programs_fts_docsize": "f8313370a81beda9df3461e01b064e59e73a811608db835280336fefadcffa13",
            "programs_fts_idx": "35883091fe935a90543438097ed4400e93da4f44106e5974dbdcab19b8fce181",
            "query_cache": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "query_log": "c62e7224c34c9f4a835ad4399feec058932694b156a91bb8830de422c6ad0f5d",
            "review_audit_log": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "review_file_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "review_promotions": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "seo_testimonial_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "source_change_signals": "2b6d95bdc5529f56e1465cf603c81b10806f568a590e2d0bcbf7be789af80896",
            "source_refetch_queue": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sqlite_stat1": "cc35f2bb58d840dd0247cb4770e5dba409c33f4113484d329fdedf0f213dd60b",
            "sqlite_stat4": "668fa9df49ceb4a651e2f949af9e50138bbb8d6279835c3b842bc5b60b095271",
            "subscribers": "5e02fb7983638c24a8e69ba0970ec977e3ccc84e14814c173eecb9f57bd7d491",
        },
        "truth": "e18b54911aee1fec3866349d8da7ae054c92455fe432c24a1bc2b2996f45ef5f",
    },
    ("medium", 3): {
        "tables": {
            "sqlite_master": "2e35da169204c4279e93e14455d7573dc2340f01018c5e902a2b32c37580e702",
            "alias_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "am_alias": "c77b364f7ad97fa9ff761f32ab16816eb5c462754862c41b4da128df6bba6d30",
            "am_application_round": "58856c2ecc9745bd86327c1ad45ab81a6a1745e6e522f60ae7fe208f6dd6f282",
            "api_keys": "bf7b28e9ca8773792f9ff9446276ef44df6a236b273df8ee710a005a94b47cf2",
            "billing_events": "ddf0cd2bd67a176f53fef1f875832b7de8c42b10dbf94c0aeeaa5ace39dc79d4",
            "channel_roi": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "customer_feedback": "697305d840923986fdc964521884c8f77f73c44d32fa25b528c01cedd036a5f0",
            "customer_success_events": "448f29df94594ede369ebcc719c3be280f7e6021d00275101db307c3d709a615",
            "error_log": "069b3d26d5460244f64367494cb979fc0d0747da59aa91152a6c15b40f723765",
            "forecast_calibration": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "forecast_predictions": "ffc725127ec2d1f5527b3ea36a1ebaac4b27b3e9a3d1cceff9b5b05f86169e1d",
            "hallucination_guard": "a06c17147e9fc8271e90f526284637ce49cf8431c46d2eefed7a0a7fc9a20097",
            "hallucination_guard_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "personalized_cache": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "prefectures": "3f6d7e8a04c0d03a1fd2d5d3fafb938be8548733d772ed83cbc2a5078403b6a7",
            "programs": "25236bea6643894df2bbe06af8c9c0dbf7d6779032020d6ac095e225db1a30af",
            "programs_fts": "66583b97ed754fdc9c527d91078c6c39929eefd0d9e417d7efafb8da57b5e2c4",
            "programs_fts_config": "02ecde2e3947cc532bbf60dbf81b8bd9a41a31809d479a38ac7b2e84fd68d175",
            "programs_fts_content": "0602d4e5d5e75e76c0dca66a6657017b79d3384d46f8852806b6b996668233d1",
            "programs_fts_data": "2f2fb53f610d195465cf7bfa846c4c282f889783450595f4d7efba946584a849",
            "programs_fts_docsize": "0faf3c7406a7cd69fb20bf6b6173431d1ee8a8f465a700177ec21539252e6b33",
            "programs_fts_idx": "a543431cf1e4e2daaaa107e4a759e8da1799bef7f78c587cb71498b2f001f81f",
            "query_cache": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "query_log": "7a23741a30372fcbc4b3fd19a375ed2d6d6811da93286f1d17a52ea97f6cdaeb",
            "review_audit_log": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "review_file_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "review_promotions": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "seo_testimonial_candidates": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "source_change_signals": "96bd90e12ba9e0032f87163842cb05f831d8c65cb7c5230923cd5b897a24ff6b",
            "source_refetch_queue": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sqlite_stat1": "e18336f4ebd53df71a6f5d7964c538eb9770d93eb6459da6e47548abe9a2c677",
            "sqlite_stat4": "767bce294795a0cd30d1758809270f44cf0667813a8c7cc9952a2e36c03f012e",
            "subscribers": "9eee73e3e1a0661f3768abe5eb1f83824256ceae9fd21ea473dc0ade988e947f",
        },
        "truth": "18d5b17c022f9833583aaaa8eb2d71f8925a259307b951bc4671b314579b476b",
    },
}


@pytest.mark.parametrize(("scale", "seed"), WORLDS)
def test_world_bytes_are_pinned(tmp_path, scale, seed):
    db = tmp_path / f"{scale}.db"
    build_world(db, scale=scale, seed=seed, as_of=AS_OF)
    got = world_digests(db)
    assert got["tables"] == PINS[(scale, seed)]["tables"]
    assert got["truth"] == PINS[(scale, seed)]["truth"]


def test_generator_digest_covers_every_stage():
    """A world's ``built_by.generator_digest`` changes with any file that makes it."""
    from autonomath_pipelines.demo import common, text, tracebacks, truth, vocab, world

    modules = {sys.modules[stage.__module__] for stage in world.STAGES} | {
        common,
        text,
        tracebacks,
        truth,
        vocab,
        world,
    }
    sources = world.generator_sources()
    assert {Path(m.__file__).resolve() for m in modules} <= set(sources)
    assert world.SCHEMA_PATH in sources


def pins_source(pins: dict[tuple[str, int], dict]) -> str:
    """``PINS = {...}`` as this file spells it."""
    lines = ["PINS: dict[tuple[str, int], dict] = {"]
    for (scale, seed), digests in pins.items():
        lines += [f'    ("{scale}", {seed}): {{', '        "tables": {']
        lines += [f'            "{table}": "{digest}",' for table, digest in digests["tables"].items()]
        lines += ["        },", f'        "truth": "{digests["truth"]}",', "    },"]
    return "\n".join([*lines, "}"])


if __name__ == "__main__":
    fresh = {}
    with tempfile.TemporaryDirectory() as folder:
        for scale, seed in WORLDS:
            db = Path(folder) / f"{scale}.db"
            build_world(db, scale=scale, seed=seed, as_of=AS_OF)
            fresh[(scale, seed)] = world_digests(db)
    print(pins_source(fresh))
