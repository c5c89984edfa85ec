"""eddy: online machine learning from Python, thin over eddy's Rust engine.

The distribution is ``eddy-ml`` on PyPI (``eddy`` is taken); the import name is ``eddy``.

>>> import eddy
>>> model = eddy.Pipeline(eddy.learner("ftrl", alpha=0.05))
>>> model.learn_one({"price": 3.5, "site": "a"}, True)
>>> p = model.predict_proba_one({"price": 3.5, "site": "a"})[True]

- :func:`learner` — a learner of eddy's registry by the names and params of ``eddy learn``
  and workflow TOML.
- :class:`Pipeline` (also :data:`Model`) — features + learner: River's ``learn_one`` /
  ``predict_one`` / ``predict_proba_one``, Arrow batches (``learn_batch`` / ``predict_batch``
  over pyarrow or pandas), ``save`` / ``Pipeline.load`` of the model files ``eddy learn
  --save`` writes and ``eddy predict`` reads.
- :class:`Registry` — a model registry: versions, stages, promote, publish, load.
- :func:`run` — run a TOML workflow, get its summary.
- :func:`serve` — serve a pipeline, a model file or a registry over HTTP with ``eddy serve``'s
  server; returns a :class:`Server` (``url``, ``predict_url(name)``, ``stop()``; a context
  manager).
- :class:`EddyError` — every engine error (a ``ValueError``), with the engine's message.

When River is installed, :class:`Pipeline` is registered as a ``river.base.Classifier`` so
``river.evaluate.progressive_val_score`` and River's classification metrics accept it.
"""

from ._eddy import EddyError, Learner, Pipeline, Registry, Server, __version__, learner, run, serve

Model = Pipeline
"""A trained :class:`Pipeline` is what a model file holds: ``eddy.Model.load(path)``."""

__all__ = [
    "EddyError",
    "Learner",
    "Model",
    "Pipeline",
    "Registry",
    "Server",
    "learner",
    "run",
    "serve",
    "__version__",
]


def _register_with_river() -> None:
    import importlib.util

    if importlib.util.find_spec("river") is None:
        return
    from river import base

    base.Classifier.register(Pipeline)


_register_with_river()
