"""eddy.serve: the server `eddy serve` runs, started from Python on 127.0.0.1 port 0."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

import eddy
from conftest import read_table, river_rows


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def trained(ctr_csv):
    model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05), hash_bits=18)
    model.learn_batch(read_table(ctr_csv))
    return model


def test_a_served_pipeline_answers_what_it_predicts(ctr_csv):
    model = trained(ctr_csv)
    rows = [x for x, _ in river_rows(ctr_csv, limit=20)]
    with eddy.serve(model, name="ctr", port=0) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert server.models == ["ctr"] and server.running
        answer = post(server.predict_url("ctr"), {"rows": rows})
        assert answer["model"] == "ctr" and answer["version"] == 1
        served = np.array(answer["predictions"], dtype=np.float32)
        ours = model.predict_batch(read_table(ctr_csv).slice(0, 20))
        assert np.array_equal(served, ours)
        with urllib.request.urlopen(server.url + "/healthz", timeout=30) as r:
            assert r.status == 200
    assert not server.running
    with pytest.raises(urllib.error.URLError):
        post(server.predict_url("ctr"), {"rows": rows})
    server.stop()  # idempotent


def test_a_registry_serves_its_production_version_and_a_model_file_serves(ctr_csv, tmp_path):
    registry = eddy.Registry(tmp_path / "reg", create=True)
    first = trained(ctr_csv)
    second = eddy.Pipeline("sgd", hash_bits=12)
    second.learn_batch(read_table(ctr_csv))
    registry.publish("ctr", first)
    registry.publish("ctr", second)
    registry.promote("ctr", 1, "production")
    rows = [x for x, _ in river_rows(ctr_csv, limit=5)]
    expected = first.predict_batch(read_table(ctr_csv).slice(0, 5))
    server = eddy.serve(registry, models=["ctr@production"])
    try:
        answer = post(server.predict_url("ctr"), {"rows": rows})
        assert answer["version"] == 1
        assert np.array_equal(np.array(answer["predictions"], dtype=np.float32), expected)
    finally:
        server.stop()
    # a registry directory and a model file serve too
    with eddy.serve(str(tmp_path / "reg")) as server:
        assert post(server.predict_url("ctr"), {"rows": rows})["version"] == 2
    first.save(tmp_path / "m.eddy")
    with eddy.serve(tmp_path / "m.eddy", name="m") as server:
        answer = post(server.predict_url("m"), {"rows": rows})
        assert np.array_equal(np.array(answer["predictions"], dtype=np.float32), expected)


def test_bad_sources_are_refused_with_a_message(tmp_path):
    with pytest.raises(eddy.EddyError, match="serve: expected"):
        eddy.serve(42)
    with pytest.raises(eddy.EddyError):
        eddy.serve(tmp_path / "missing.eddy")
    with pytest.raises(eddy.EddyError, match="nothing to save|no rows"):
        eddy.serve(eddy.Pipeline("ftrl"))
