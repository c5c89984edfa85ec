"""River's protocol: an eddy pipeline inside River's own progressive validation."""

import pyarrow as pa
import pytest
from river import evaluate, metrics

import eddy
from conftest import river_rows


def test_progressive_val_score_runs_river_unchanged_and_learns(ctr_csv):
    model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05))
    metric = metrics.ROCAUC() + metrics.LogLoss() + metrics.Accuracy()
    evaluate.progressive_val_score(dataset=river_rows(ctr_csv, 5000), model=model, metric=metric)
    auc, logloss, _ = (m.get() for m in metric)
    assert model.rows_learned == 5000
    # a model that learned nothing scores 0.5 AUC and log(2) = 0.693 log loss (`eddy learn`
    # scores 0.68 AUC on these rows: one micro-batch, so its scaler sees them all first)
    assert auc > 0.6, auc
    assert logloss < 0.5, logloss


def test_progressive_val_score_is_predict_then_learn_with_our_methods(ctr_csv):
    """River's score equals the loop it stands for, run by hand with our methods."""
    metric = metrics.LogLoss()
    evaluate.progressive_val_score(
        dataset=river_rows(ctr_csv, 2000), model=eddy.Pipeline("ftrl"), metric=metric
    )
    by_hand, model = metrics.LogLoss(), eddy.Pipeline("ftrl")
    for x, y in river_rows(ctr_csv, 2000):
        by_hand.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    assert metric.get() == by_hand.get()


def test_learn_one_equals_learn_batch_of_one_row(ctr_csv):
    """The dict path and the Arrow path featurize and learn alike, row for row."""
    one, batched = eddy.Pipeline("ftrl"), eddy.Pipeline("ftrl")
    rows = list(river_rows(ctr_csv, 300))
    for x, y in rows:
        one.learn_one(x, y)
        batch = pa.RecordBatch.from_pylist([{**x, "label": float(y)}])
        batched.learn_batch(batch)
    probe = pa.RecordBatch.from_pylist([x for x, _ in rows[:50]])
    assert one.predict_batch(probe).tolist() == batched.predict_batch(probe).tolist()
    assert [one.predict_proba_one(x)[True] for x, _ in rows[:50]] == pytest.approx(
        one.predict_batch(probe).tolist(), rel=1e-6
    )


def test_predict_one_answers_in_the_labels_kind(ctr_csv):
    rows = list(river_rows(ctr_csv, 200))
    flags, ints = eddy.Pipeline("ftrl"), eddy.Pipeline("ftrl")
    for x, y in rows:
        flags.learn_one(x, y)
        ints.learn_one(x, int(y))
    assert isinstance(flags.predict_one(rows[0][0]), bool)
    assert isinstance(ints.predict_one(rows[0][0]), int)
    assert set(flags.predict_proba_one(rows[0][0])) == {False, True}


def test_multiclass_and_regression_learners():
    soft = eddy.Pipeline(eddy.learner("softmax", classes=3))
    reg = eddy.Pipeline("sgd-regression")
    for i in range(600):
        x = {"a": float(i % 3), "k": f"k{i % 3}"}
        soft.learn_one(x, i % 3)
        reg.learn_one({"a": float(i % 7)}, 2.0 * (i % 7))
    proba = soft.predict_proba_one({"a": 2.0, "k": "k2"})
    assert set(proba) == {0, 1, 2} and sum(proba.values()) == pytest.approx(1.0, rel=1e-5)
    assert soft.predict_one({"a": 2.0, "k": "k2"}) == 2
    assert isinstance(reg.predict_one({"a": 3.0}), float)
