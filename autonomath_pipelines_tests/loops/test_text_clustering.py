"""The shared embed→cluster shape of loops A and E."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
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
