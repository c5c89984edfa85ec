"""Shared fixtures: the `eddy` CLI binary (for parity with `eddy learn` / `eddy predict`) and
click data from `eddy gen ctr`."""

import csv
import os
import pathlib
import subprocess

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def eddy_bin() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("EDDY_BIN", ROOT / "target" / "debug" / "eddy"))
    if not path.is_file():
        pytest.fail(f"the eddy CLI is not at {path}: build it (cargo build) or set EDDY_BIN")
    return path


def cli(bin_path, *args, cwd=None) -> str:
    done = subprocess.run([str(bin_path), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"eddy {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def ctr_csv(tmp_path_factory, eddy_bin) -> pathlib.Path:
    out = tmp_path_factory.mktemp("data") / "ctr.csv"
    cli(eddy_bin, "gen", "ctr", "--rows", 20000, "--out", out)
    return out


def read_table(path) -> pa.Table:
    """The CSV as one record batch's worth of columns (one chunk per column)."""
    return pacsv.read_csv(path).combine_chunks()


def river_rows(path, limit=None):
    """(x, y) pairs as River datasets give them: numbers as floats, y as bool."""
    with open(path) as f:
        for i, row in enumerate(csv.DictReader(f)):
            if limit is not None and i >= limit:
                return
            y = row.pop("label") == "1"
            x = {k: (v if k.startswith("c") else float(v)) for k, v in row.items()}
            yield x, y
