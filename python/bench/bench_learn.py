"""River vs eddy on the same click rows, in one run (issue #20's benchmark).

    python python/bench/bench_learn.py --rows 1000000 --eddy-bin target/release/eddy

Measures, on `eddy gen ctr --rows N` (the file is generated when missing):
- River: `(Select(numeric) | StandardScaler) + (Select(categorical) | OneHotEncoder) |
  LogisticRegression` (one-hot with `drop_zeros=True`: only the row's categories), one `learn_one` per row — River's idiomatic equivalent of eddy's
  pipeline (scaled numbers, one weight per category);
- eddy `learn_one` per row (FTRL, the default pipeline: scaled numbers, hashed categories);
- eddy `learn_batch` over the file read by pyarrow (timed alone and with the read);
- `eddy learn` on the CLI over the same file (checkpoints off), wall time of the process.

Rows are parsed into dicts before the clock starts (in chunks, the same dicts for River and
eddy), so the learn_one figures time learning only. Every measurement is repeated
`--repeat` times (default 3), interleaved, and the median is reported (with every run's
seconds). Prints one JSON line.
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import statistics
import time

import pyarrow.csv as pacsv

import eddy

NUMERIC = ["f0", "f1", "f2", "f3", "f4"]
CATEGORICAL = [f"c{i}" for i in range(10)]
CHUNK = 100_000


def chunks(path, limit):
    """Lists of (x, y) as River datasets give them, CHUNK rows at a time."""
    out = []
    with open(path) as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= limit:
                break
            y = row.pop("label") == "1"
            out.append(({k: (v if k[0] == "c" else float(v)) for k, v in row.items()}, y))
            if len(out) == CHUNK:
                yield out
                out = []
    if out:
        yield out


def time_learn_one(model, path, rows):
    spent, n = 0.0, 0
    for chunk in chunks(path, rows):
        learn = model.learn_one
        start = time.perf_counter()
        for x, y in chunk:
            learn(x, y)
        spent += time.perf_counter() - start
        n += len(chunk)
    return n, spent


def river_model():
    from river import compose, linear_model, optim, preprocessing

    num = compose.Select(*NUMERIC) | preprocessing.StandardScaler()
    cat = compose.Select(*CATEGORICAL) | preprocessing.OneHotEncoder(drop_zeros=True)
    return (num + cat) | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--data", type=pathlib.Path, default=None)
    ap.add_argument("--eddy-bin", type=pathlib.Path, default=pathlib.Path("target/release/eddy"))
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median reported)")
    ap.add_argument("--river-rows", type=int, default=None,
                    help="rows River learns (default all; its rate is per row either way)")
    args = ap.parse_args()
    data = args.data or pathlib.Path(f"/tmp/eddy-bench-ctr-{args.rows}.csv")
    if not data.exists():
        subprocess.run([str(args.eddy_bin), "gen", "ctr", "--rows", str(args.rows), "--out", str(data)],
                       check=True, capture_output=True)
    result = {"rows": args.rows, "python": sys.version.split()[0], "load1": os.getloadavg()[0],
              "repeat": args.repeat}
    runs = {"river_learn_one": [], "eddy_learn_one": [], "eddy_learn_batch": [],
            "csv_read": [], "eddy_cli_learn": []}
    counts = {}
    for _ in range(args.repeat):
        n, s = time_learn_one(river_model(), data, args.river_rows or args.rows)
        counts["river_learn_one"] = n
        runs["river_learn_one"].append(s)

        model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05))
        n, s = time_learn_one(model, data, args.rows)
        counts["eddy_learn_one"] = n
        runs["eddy_learn_one"].append(s)

        start = time.perf_counter()
        table = pacsv.read_csv(data)
        runs["csv_read"].append(time.perf_counter() - start)
        model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05))
        start = time.perf_counter()
        model.learn_batch(table)
        runs["eddy_learn_batch"].append(time.perf_counter() - start)
        counts["eddy_learn_batch"] = table.num_rows
        del table

        start = time.perf_counter()
        done = subprocess.run([str(args.eddy_bin), "learn", "--data", str(data), "--label", "label",
                               "--model", "ftrl", "--alpha", "0.05", "--checkpoint-every", "off"],
                              check=True, capture_output=True, text=True)
        runs["eddy_cli_learn"].append(time.perf_counter() - start)
        line = json.loads(done.stdout.strip().splitlines()[-1])
        counts["eddy_cli_learn"] = line.get("rows")

    med = {k: statistics.median(v) for k, v in runs.items()}
    for k in ("river_learn_one", "eddy_learn_one", "eddy_learn_batch"):
        result[k] = {"rows": counts[k], "seconds": round(med[k], 3),
                     "rows_per_s": round(counts[k] / med[k]), "runs": [round(x, 3) for x in runs[k]]}
    result["eddy_learn_batch"]["seconds_with_csv_read"] = round(med["eddy_learn_batch"] + med["csv_read"], 3)
    result["eddy_cli_learn"] = {"rows": counts["eddy_cli_learn"], "seconds_wall": round(med["eddy_cli_learn"], 3),
                                "rows_per_s_wall": round(counts["eddy_cli_learn"] / med["eddy_cli_learn"]),
                                "runs": [round(x, 3) for x in runs["eddy_cli_learn"]]}
    wall = med["eddy_cli_learn"]

    river = result["river_learn_one"]["rows_per_s"]
    result["speedup_learn_one_vs_river"] = round(result["eddy_learn_one"]["rows_per_s"] / river, 1)
    result["speedup_learn_batch_vs_river"] = round(result["eddy_learn_batch"]["rows_per_s"] / river, 1)
    result["learn_batch_with_read_over_cli_wall"] = round(
        result["eddy_learn_batch"]["seconds_with_csv_read"] / wall, 2)
    result["learn_batch_over_cli_wall"] = round(med["eddy_learn_batch"] / wall, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
