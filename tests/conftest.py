"""Shared fixtures: one Spark session and one set of generated shards per test run."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from imgcurate import synth  # noqa: E402
from tests import shards as bad_shards  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for the whole run (starting Spark costs seconds)."""
    from imgcurate.spark.session import get_spark

    session = get_spark(
        master="local[2]",
        app_name="imgcurate-tests",
        conf={"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def img2dataset_dir(tmp_path_factory):
    """Three shards in img2dataset's layout: 12 rows each, 2 failed downloads per shard."""
    return synth.make_img2dataset(
        tmp_path_factory.mktemp("img2dataset"),
        shards=3,
        samples_per_shard=12,
        failures_per_shard=2,
    )


@pytest.fixture(scope="session")
def webdataset_dir(tmp_path_factory):
    """Two plain webdataset shards of 8 samples (.jpg + .txt)."""
    return synth.make_webdataset(
        tmp_path_factory.mktemp("webdataset"), shards=2, samples_per_shard=8
    )


@pytest.fixture(scope="session")
def bad_dir(tmp_path_factory):
    """Shards holding every kind of bad input scan must survive."""
    return bad_shards.make_bad_dataset(tmp_path_factory.mktemp("bad"))
