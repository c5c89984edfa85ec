#!/usr/bin/env python3
"""Builds the example's impressions.csv and clicks.csv from `eddy gen ctr` rows.

    eddy gen ctr --rows 1500 --out /tmp/ctr.csv
    python3 examples/delayed-labels/make_data.py /tmp/ctr.csv examples/delayed-labels

Each generated row becomes an impression (`id`, event time `ts` in ms: one a second, the
features `f0..f4`, `c0..c9`, without the label). A row whose label is 1 was clicked: its click
(`id`, `ts`) comes a random delay later (exponential, mean 20 s, fixed seed), so about 5% of
the clicks come after the workflow's 60 s wait and those impressions are labelled 0. The
clicks file is in click-time order.
"""
import csv
import random
import sys

src, out = sys.argv[1], sys.argv[2]
rng = random.Random(7)
clicks = []
with open(src, newline="") as f, open(f"{out}/impressions.csv", "w", newline="") as imp:
    rows = csv.reader(f)
    header = next(rows)
    w = csv.writer(imp, lineterminator="\n")
    w.writerow(["id", "ts"] + header[1:])
    for i, row in enumerate(rows):
        ts = i * 1000
        w.writerow([i, ts] + row[1:])
        if row[0] == "1":
            delay = int(rng.expovariate(1 / 20000))
            clicks.append((ts + delay, i))
with open(f"{out}/clicks.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["id", "ts"])
    for ts, i in sorted(clicks):
        w.writerow([i, ts])
