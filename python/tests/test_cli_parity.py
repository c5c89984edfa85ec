"""One engine, one file format: Python and the CLI read, write and predict alike."""

import csv

import numpy as np
import pyarrow as pa

import eddy
from conftest import cli, read_table


def cli_predictions(eddy_bin, model, data, out):
    cli(eddy_bin, "predict", "--model", model, "--data", data, "--out", out)
    with open(out) as f:
        return np.array([float(r["prediction"]) for r in csv.DictReader(f)], dtype=np.float32)


def test_python_trained_model_predicts_bit_equal_to_eddy_predict(ctr_csv, eddy_bin, tmp_path):
    model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05), cross_all=True, hash_bits=20)
    model.learn_batch(read_table(ctr_csv))
    model.save(tmp_path / "m.eddy")
    ours = model.predict_batch(read_table(ctr_csv))
    theirs = cli_predictions(eddy_bin, tmp_path / "m.eddy", ctr_csv, tmp_path / "p.csv")
    assert ours.dtype == np.float32 and len(ours) == 20000
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    # and the saved file, loaded back, is the same model
    again = eddy.Model.load(tmp_path / "m.eddy")
    assert np.array_equal(again.predict_batch(read_table(ctr_csv)), ours)


def test_learn_batch_trains_the_model_eddy_learn_trains(ctr_csv, eddy_bin, tmp_path):
    """The same file through `eddy learn --save` and through learn_batch: the same model."""
    cli(eddy_bin, "learn", "--data", ctr_csv, "--label", "label", "--model", "ftrl",
         "--alpha", "0.05", "--checkpoint-every", "off", "--save", tmp_path / "cli.eddy")
    by_cli = eddy.Model.load(tmp_path / "cli.eddy")
    py = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05))
    py.learn_batch(read_table(ctr_csv))
    table = read_table(ctr_csv)
    assert by_cli.rows_learned == py.rows_learned == 20000
    assert np.array_equal(by_cli.predict_batch(table), py.predict_batch(table))


def test_pandas_and_arrow_inputs_learn_alike(ctr_csv):
    table = read_table(ctr_csv).slice(0, 3000)
    frame = table.to_pandas()
    a, b, c = (eddy.Pipeline("ftrl") for _ in range(3))
    a.learn_batch(table)
    b.learn_batch(frame)
    labels = frame.pop("label").to_numpy()
    c.learn_batch(frame, label=labels)
    expected = a.predict_batch(table)
    assert np.array_equal(b.predict_batch(frame), expected)
    assert np.array_equal(c.predict_batch(frame), expected)


def test_predict_batch_is_a_view_over_arrow_memory(ctr_csv):
    model = eddy.Pipeline("ftrl")
    batch = read_table(ctr_csv).slice(0, 1000).to_batches()[0]
    model.learn_batch(batch)
    out = model.predict_batch(batch)
    assert not out.flags.owndata  # numpy views the Arrow buffer: no copy
    arrow = model.predict_batch(batch, arrow=True)
    assert isinstance(arrow, pa.Array) and arrow.type == pa.float32()
    assert np.array_equal(arrow.to_numpy(), out)
