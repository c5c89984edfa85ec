"""The model registry and workflows from Python."""

import numpy as np
import pytest

import eddy
from conftest import read_table

WORKFLOW = """
[workflow]
name = "py-ctr"

[sources.live]
kind = "ctr"
rows = 4000
batch-rows = 500

[sources.holdout]
kind = "ctr"
offset = 4000
rows = 2000
batch-rows = 1000

[features.clicks]
label = "label"
numeric = ["f0", "f1", "f2", "f3", "f4"]
categorical = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
hash-bits = 16

[nodes.ctr]
kind = "stream-train"
source = "live"
features = "clicks"
learner = "ftrl"
params = { ftrl = { alpha = 0.05 } }
publish-rows = 2000

[nodes.gate]
kind = "evaluate"
model = "ctr"
after = ["ctr"]
source = "holdout"
min-auc = 0.6
"""


def test_registry_publish_promote_load(ctr_csv, tmp_path):
    table = read_table(ctr_csv)
    registry = eddy.Registry(tmp_path / "reg", create=True)
    first, second = eddy.Pipeline("ftrl"), eddy.Pipeline("ftrl")
    first.learn_batch(table.slice(0, 1000))
    second.learn_batch(table.slice(0, 5000))
    v1 = registry.publish("ctr", first, metrics={"auc": 0.6})
    v2 = registry.publish("ctr", second)
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["metrics"] == {"auc": 0.6} and v2["training-rows"] == 5000
    assert registry.models() == ["ctr"]
    assert registry.production("ctr") is None
    assert registry.promote("ctr", 1, "production")["stage"] == "production"
    # default load: the production version, not the newest
    assert np.array_equal(registry.load("ctr").predict_batch(table), first.predict_batch(table))
    registry.promote("ctr", 2, "production")
    assert [v["stage"] for v in registry.versions("ctr")] == ["archived", "production"]
    assert np.array_equal(registry.load("ctr", 2).predict_batch(table), second.predict_batch(table))
    with pytest.raises(eddy.EddyError, match="stage `live`"):
        registry.promote("ctr", 1, "live")
    with pytest.raises(eddy.EddyError):
        eddy.Registry(tmp_path / "missing")


def test_run_returns_the_summary_and_the_registry_holds_the_versions(tmp_path):
    spec = tmp_path / "wf.toml"
    spec.write_text(WORKFLOW)
    summary = eddy.run(spec, run_dir=tmp_path / "run")
    assert summary["workflow"] == "py-ctr" and summary["failed"] == []
    assert not summary["interrupted"]
    nodes = summary["state"]["nodes"]
    assert nodes["ctr"]["status"] == "succeeded", nodes
    registry = eddy.Registry(summary["registry"])
    versions = registry.versions("ctr")
    assert len(versions) >= 2 and versions[-1]["training-rows"] == 4000
    assert registry.load("ctr").rows_learned == 4000


def test_a_bad_workflow_names_the_file_and_key(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(WORKFLOW.replace('learner = "ftrl"', 'learner = "ftrl"\nlearnr = 3'))
    with pytest.raises(eddy.EddyError, match="learnr") as e:
        eddy.run(spec, run_dir=tmp_path / "run")
    assert "bad.toml" in str(e.value)
