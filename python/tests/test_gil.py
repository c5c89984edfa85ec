"""learn_batch releases the GIL: another Python thread runs while the batch is learned."""

import sys
import threading

import pyarrow as pa

import eddy


def test_another_thread_runs_python_while_learn_batch_works(ctr_csv):
    from conftest import read_table

    table = read_table(ctr_csv)
    big = pa.concat_tables([table] * 20).combine_chunks()  # 400 k rows: well over a second here
    model = eddy.Pipeline("ftrl")
    model.learn_batch(table.slice(0, 10))
    started, seen = threading.Event(), []

    def learn():
        started.set()
        model.learn_batch(big)

    old = sys.getswitchinterval()
    # no forced GIL hand-over: the main thread runs only when the worker lets the GIL go
    sys.setswitchinterval(100.0)
    try:
        worker = threading.Thread(target=learn)
        worker.start()
        started.wait()
        # running here while the worker is inside learn_batch means the GIL was released;
        # the model is borrowed by that call, so touching it says where the worker is
        try:
            seen.append(model.rows_learned)
        except RuntimeError as e:  # "Already mutably borrowed": we ran during learn_batch
            seen.append(str(e))
        worker.join()
    finally:
        sys.setswitchinterval(old)
    assert seen and isinstance(seen[0], str) and "borrow" in seen[0], seen
    assert model.rows_learned == 10 + big.num_rows
