"""learn_one / predict_one featurize a row with the pipeline's per-row path (no record batch);
it must give what the batch path gives for the same row, bit for bit."""

import numpy as np
import pyarrow as pa

import eddy
from conftest import river_rows


def one_row_table(x, y):
    """The row as the one-row batch the batch path reads (the types a row's values have)."""
    cols = {k: pa.array([v], type=pa.float64() if isinstance(v, float) else pa.string())
            for k, v in x.items()}
    cols["label"] = pa.array([float(y)], type=pa.float64())
    return pa.table(cols)


def rows_table(rows):
    keys = list(rows[0][0])
    return pa.table({k: pa.array([x[k] for x, _ in rows],
                                 type=pa.float64() if k.startswith("f") else pa.string())
                     for k in keys})


def test_learn_one_equals_learn_batch_of_one_row_bit_for_bit(ctr_csv):
    rows = list(river_rows(ctr_csv, limit=2500))
    train, probe = rows[:2000], rows[2000:]
    by_row = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05), cross_all=True, hash_bits=18)
    by_batch = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05), cross_all=True, hash_bits=18)
    for x, y in train:
        by_row.learn_one(x, y)
        by_batch.learn_batch(one_row_table(x, y))
    assert by_row.rows_learned == by_batch.rows_learned == 2000
    table = rows_table(probe)
    a, b = by_row.predict_batch(table), by_batch.predict_batch(table)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    # serving one row == serving the batch (the same featurizer code either way)
    for (x, _), p in zip(probe, a):
        assert by_row.predict_proba_one(x)[True] == float(p)
        assert by_batch.predict_proba_one(x)[True] == float(p)
        assert by_row.predict_one(x) == bool(p >= 0.5)


def test_missing_and_null_values_featurize_alike_both_ways(ctr_csv):
    rows = list(river_rows(ctr_csv, limit=600))
    by_row = eddy.Pipeline("ftrl", hash_bits=16)
    by_batch = eddy.Pipeline("ftrl", hash_bits=16)
    for i, (x, y) in enumerate(rows[:500]):
        if i % 7 == 3:
            x = {**x, "f1": None, "c2": None}
        if i % 11 == 5:
            x = {**x, "f3": float("nan")}
        by_row.learn_one(x, y)
        by_batch.learn_batch(one_row_table(x, y).cast(pa.schema(
            [pa.field(k, pa.string() if k.startswith("c") else pa.float64()) for k in [*x, "label"]])))
    probe = [x for x, _ in rows[500:]]
    for x in probe:
        assert by_row.predict_proba_one(x) == by_batch.predict_proba_one(x)
