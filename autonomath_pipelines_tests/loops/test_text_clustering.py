"""The shared embed→cluster shape of loops A and E."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autonomath_pipelines.lib.clustering import ClusterParams, dbscan_cosine
from autonomath_pipelines.loops.text_clustering import cluster_frame, clustering_metadata, with_vectors


@given(weight=st.integers(min_value=0, max_value=20), min_samples=st.integers(min_value=1, max_value=20))
def test_single_text_shortcut_matches_dbscan(weight, min_samples):
    vector = np.array([[0.6, 0.8, 0.0]], dtype=np.float32)
    frame = with_vectors(pd.DataFrame({"text": ["x"], "weight": [weight]}), vector)
    expected = dbscan_cosine(vector, np.array([weight], float), eps=0.2, min_samples=min_samples)
    assert cluster_frame(frame, ClusterParams(eps=0.2, min_samples=min_samples)).cluster.tolist() == expected.tolist()


def test_clusters_and_noise_are_reported():
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1]], dtype=np.float32)
    frame = with_vectors(pd.DataFrame({"text": list("abc"), "weight": [3, 3, 1]}), vectors)
    clustered = cluster_frame(frame, ClusterParams(eps=0.05, min_samples=3))
    assert clustered.cluster.tolist() == [0, 0, -1]
    assert clustering_metadata(clustered) == pytest.approx(
        {"clusters": 1, "noise_texts_share": 1 / 3, "noise_weight_share": 1 / 7}
    )


def test_empty_frame_metadata():
    assert clustering_metadata(pd.DataFrame(columns=["cluster", "weight"])) == {
        "clusters": 0,
        "noise_texts_share": 0.0,
        "noise_weight_share": 0.0,
    }


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["P3", "P1", "P2"]), st.integers(1, 20)), min_size=1, max_size=40),
    st.integers(0, 2**31 - 1),
)
def test_clustering_per_group_labels_each_group_as_clustering_it_alone_would(rows, seed):
    from autonomath_pipelines.loops.loop_e_alias_expansion import AliasClusteringConfig
    from autonomath_pipelines.loops.text_clustering import cluster_with_config

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8))
    vectors = [centres[int(p[1]) - 1] + 0.05 * rng.normal(size=8) for p, _ in rows]
    frame = with_vectors(
        pd.DataFrame(
            {
                "entity_id": [p for p, _ in rows],
                "text": [f"t{i}" for i in range(len(rows))],
                "weight": [float(w) for _, w in rows],
            }
        ),
        np.asarray([v / np.linalg.norm(v) for v in vectors], dtype=np.float32),
    )
    config = AliasClusteringConfig(eps=0.3)
    clustered, _ = cluster_with_config(frame, config, group_by="entity_id")
    params = config.params(0.3)
    alone = pd.concat(
        [cluster_frame(group, params, config=config) for _, group in frame.groupby("entity_id", sort=True)],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(clustered.drop(columns="vector"), alone.drop(columns="vector"))
