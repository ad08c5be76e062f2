"""Shared fixtures: a hand-made programs database for search, and the small demo world."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from autonomath_pipelines.contract.schema import create_all
from autonomath_pipelines.contract.sqlite import sqlite3

# No per-example deadline: properties assert behaviour, not speed (benchmarks measure speed), and a
# busy 2-core CI machine can take over Hypothesis's default 200 ms for one example of any of them.
settings.register_profile("autonomath", deadline=None)
settings.load_profile("autonomath")


@pytest.fixture(autouse=True, scope="session")
def search_index_dir(tmp_path_factory):
    """The built-in search's shadow indexes go to a temporary folder, not the checkout's
    ``data/search_index`` (its default): every test database would leave an index file there."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTONOMATH_SEARCH_INDEX_DIR", str(tmp_path_factory.mktemp("search_index")))
        yield


#: The demo world's logs end here (JST); fixed so every test run sees the same world.
AS_OF = dt.date(2026, 11, 21)
#: The last complete daily partition of that world: loop H's natural target.
LAST_DAY = "2026-11-20"

PROGRAMS = [
    # program_id, name, summary, agency, level, prefecture_code, municipality, category
    (
        "P001",
        "ものづくり・商業・サービス生産性向上促進補助金",
        "中小企業の革新的な設備投資を支援します。",
        "中小企業庁",
        "national",
        None,
        None,
        "設備投資",
    ),
    (
        "P002",
        "IT導入補助金2026",
        "ITツールの導入費用の一部を補助します。",
        "経済産業省",
        "national",
        None,
        None,
        "IT導入",
    ),
    (
        "P003",
        "東京都創業助成金",
        "都内で創業する方の経費を助成します。",
        "東京都産業労働局",
        "prefectural",
        "13",
        None,
        "創業",
    ),
    (
        "P004",
        "大阪市中小企業設備投資支援補助金",
        "大阪市内の事業者の設備更新を支援。",
        "大阪市経済戦略局",
        "municipal",
        "27",
        "大阪市",
        "設備投資",
    ),
    (
        "P005",
        "キャリアアップ助成金",
        "非正規雇用労働者の正社員化を助成。",
        "厚生労働省",
        "national",
        None,
        None,
        "雇用",
    ),
    (
        "P006",
        '100% "quoted" AND NEAR(x) program_*',
        "FTS5 syntax inside data",
        "テスト庁",
        "national",
        None,
        None,
        "その他",
    ),
]
PREFECTURES = [("13", "東京都", "Tokyo", "関東"), ("27", "大阪府", "Osaka", "近畿")]


def make_programs_db(path: Path) -> Path:
    conn = sqlite3.connect(str(path))
    create_all(conn)
    conn.executemany("INSERT INTO prefectures VALUES (?, ?, ?, ?)", PREFECTURES)
    ts = "2026-01-01T00:00:00Z"
    conn.executemany(
        "INSERT INTO programs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1000000, 'A', ?, ?, ?)",
        [(*p, f"https://example.go.jp/{p[0]}", ts, ts) for p in PROGRAMS],
    )
    regions = {code: name for code, name, _, _ in PREFECTURES}
    conn.executemany(
        "INSERT INTO programs_fts VALUES (?, ?, ?, ?, ?)",
        [(p[0], p[1], p[2], p[3], " ".join(filter(None, [regions.get(p[5]), p[6]]))) for p in PROGRAMS],
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="session")
def programs_db(tmp_path_factory) -> Path:
    return make_programs_db(tmp_path_factory.mktemp("programs") / "programs.db")


@pytest.fixture(scope="session")
def small_world_pristine(tmp_path_factory) -> Path:
    """The small demo world, built once per session. Never write to it: use ``small_world``."""
    from autonomath_pipelines.demo import build_world

    path = tmp_path_factory.mktemp("world") / "autonomath.db"
    build_world(path, scale="small", seed=7, as_of=AS_OF)
    return path


@pytest.fixture
def small_world(small_world_pristine, tmp_path) -> Path:
    """A private copy of the small demo world that a test may write to."""
    from autonomath_pipelines.demo import truth_path

    path = tmp_path / "autonomath.db"
    shutil.copyfile(small_world_pristine, path)
    shutil.copyfile(truth_path(small_world_pristine), truth_path(path))
    return path


#: A full week of the small world's logs (weekly partitions start on Sunday, Asia/Tokyo).
LAST_FULL_WEEK = "2026-11-08"


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the session: content-addressed, so sharing it between tests is safe
    and each text is embedded once."""
    return tmp_path_factory.mktemp("embeddings") / "cache.sqlite"
