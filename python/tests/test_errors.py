"""Bad input raises EddyError with the engine's message, naming the key, column or file."""

import pyarrow as pa
import pytest

import eddy


def test_unknown_learner_and_bad_params_name_the_key():
    with pytest.raises(eddy.EddyError, match="unknown learner `ftlr`"):
        eddy.learner("ftlr")
    with pytest.raises(eddy.EddyError, match="alpah"):
        eddy.learner("ftrl", alpah=0.1)
    with pytest.raises(eddy.EddyError, match="alpha"):
        eddy.learner("ftrl", alpha=-1.0)
    with pytest.raises(eddy.EddyError, match="dim"):
        eddy.learner("fm", dim=8)
    assert eddy.learner("ftrl", alpha=0.05).params == {"ftrl": {"alpha": 0.05}}
    assert eddy.learner("ftrl", fit_intercept=False).params == {"fit-intercept": False}
    assert issubclass(eddy.EddyError, ValueError)


def test_rows_that_do_not_match_the_first_one_are_refused_by_key():
    model = eddy.Pipeline("ftrl")
    model.learn_one({"f": 1.0, "c": "a"}, True)
    with pytest.raises(eddy.EddyError, match="`g`"):
        model.learn_one({"f": 1.0, "c": "a", "g": 2.0}, True)
    with pytest.raises(eddy.EddyError, match=r"x\[`f`\] is a str"):
        model.learn_one({"f": "x", "c": "a"}, True)
    with pytest.raises(eddy.EddyError, match="label"):
        model.learn_one({"f": 1.0, "c": "a"}, "yes")
    # a missing key is a missing feature, not an error
    model.learn_one({"c": "b"}, False)
    assert model.rows_learned == 2


def test_a_batch_without_a_feature_column_names_it():
    model = eddy.Pipeline("ftrl")
    model.learn_batch(pa.RecordBatch.from_pylist([{"f": 1.0, "c": "a", "label": 1}]))
    with pytest.raises(eddy.EddyError, match="`c`"):
        model.predict_batch(pa.RecordBatch.from_pylist([{"f": 1.0}]))
    with pytest.raises(TypeError, match="pyarrow.RecordBatch"):
        model.predict_batch([1, 2, 3])


def test_batch_learners_are_refused_with_the_reason():
    with pytest.raises(eddy.EddyError, match="batch learner"):
        eddy.Pipeline("logistic")


def test_a_corrupt_or_truncated_model_file_is_refused(tmp_path):
    model = eddy.Pipeline("ftrl")
    model.learn_one({"f": 1.0}, True)
    path = tmp_path / "m.eddy"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.eddy").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.eddy").write_bytes(bytes(flipped))
    for name in ["cut.eddy", "flip.eddy"]:
        with pytest.raises(eddy.EddyError):
            eddy.Model.load(tmp_path / name)
    with pytest.raises(eddy.EddyError, match="nothing to save"):
        eddy.Pipeline("ftrl").save(tmp_path / "empty.eddy")
