"""learn_batch and predict_batch release the GIL: a Python thread keeps running meanwhile."""

import threading

import pyarrow as pa

import eddy
from conftest import read_table


class Counter(threading.Thread):
    """Counts as fast as Python can until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.count = 0
        self.stopped = False
        self.started_counting = threading.Event()

    def run(self):
        self.started_counting.set()
        while not self.stopped:
            self.count += 1


def counted_while(call):
    counter = Counter()
    counter.start()
    counter.started_counting.wait(10)
    before = counter.count
    call()
    during = counter.count - before
    counter.stopped = True
    counter.join(10)
    return during


def test_the_gil_is_released_during_batch_work(ctr_csv):
    one = read_table(ctr_csv)
    table = pa.concat_tables([one] * 10).combine_chunks()  # 200,000 rows
    model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05), cross_all=True)
    # while Rust holds the GIL the counter cannot run at all; released, it counts on
    assert counted_while(lambda: model.learn_batch(table)) > 10_000
    assert model.rows_learned == 200_000
    assert counted_while(lambda: model.predict_batch(table)) > 10_000
