"""Type stubs of eddy's native module (see ``eddy/__init__.py`` for the overview)."""

from os import PathLike
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

__version__: str

class EddyError(ValueError):
    """An engine error: bad params, a missing or mistyped column, a corrupt model file, a
    workflow spec error; the message names the key, column, row or file position."""

Value = Union[int, float, str, bool, None]
ArrowData = Any  # pyarrow.RecordBatch | pyarrow.Table | pyarrow.RecordBatchReader | pandas.DataFrame

class Learner:
    """A checked learner spec: a registry name and its params."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> Dict[str, Any]: ...

def learner(name: str, **params: Any) -> Learner:
    """The learner ``name`` (``"ftrl"``, ``"sgd"``, ``"sgd-regression"``, ``"fm"``, ``"pa"``,
    ``"nb"``, ``"softmax"``, ``"streaming-kmeans"``) with its params as keywords, as
    ``eddy learn --param`` and workflow TOML spell them (``_`` for ``-``; ``alpha`` for
    ``ftrl.alpha``). Raises :class:`EddyError` naming a misspelt or out-of-range param."""

class Pipeline:
    """Features + learner, River's protocol plus Arrow batch calls.

    Numbers are standardized with running statistics and strings/booleans hashed into
    ``2**hash_bits`` slots (what ``eddy learn`` builds); the columns are the first row's or
    batch's unless ``numeric`` / ``categorical`` name them."""

    def __init__(
        self,
        learner: Union[Learner, str],
        *,
        label: str = "label",
        numeric: Optional[Sequence[str]] = None,
        categorical: Optional[Sequence[str]] = None,
        crosses: Sequence[Sequence[str]] = (),
        cross_all: bool = False,
        scale: bool = True,
        hash_bits: int = 22,
    ) -> None: ...
    def learn_one(self, x: Mapping[str, Value], y: Union[bool, int, float], w: Optional[float] = None) -> None:
        """Learns one row. The first row fixes the columns; later rows may omit keys (nulls)
        but not add keys or change a value's type. The row is featurized by the pipeline's
        per-row path (no Arrow batch, no allocation in Rust), the batch path's own code: a row
        learned here trains exactly as ``learn_batch`` of that row alone."""
    def predict_one(self, x: Mapping[str, Value]) -> Union[bool, int, float]:
        """The class (bool for binary models trained on bools), the value or the cluster."""
    def predict_proba_one(self, x: Mapping[str, Value]) -> Dict[Any, float]:
        """``{False: 1 - p, True: p}`` (binary) or ``{class: p}`` (multiclass)."""
    def learn_batch(self, data: ArrowData, label: Union[str, Sequence[Any], np.ndarray, pa.Array, None] = None) -> None:
        """Learns every row in order (GIL released); ``label`` is the label column's name or
        the labels themselves."""
    def predict_batch(self, data: ArrowData, arrow: bool = False) -> Union[np.ndarray, pa.Array]:
        """``eddy predict``'s ``prediction`` column for every row: numpy ``float32`` (or
        pyarrow with ``arrow=True``), zero-copy."""
    def save(self, path: Union[str, PathLike]) -> None:
        """Writes the model file ``eddy learn --save`` writes."""
    @staticmethod
    def load(path: Union[str, PathLike]) -> "Pipeline":
        """Reads a model file; a corrupt or foreign one raises :class:`EddyError`."""
    @property
    def learner(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def rows_learned(self) -> int: ...

class Registry:
    """A model registry directory (``<run_dir>/registry`` of a workflow run)."""

    def __init__(self, path: Union[str, PathLike], *, create: bool = False) -> None: ...
    def models(self) -> List[str]: ...
    def versions(self, model: str) -> List[Dict[str, Any]]: ...
    def latest(self, model: str) -> Optional[Dict[str, Any]]: ...
    def production(self, model: str) -> Optional[Dict[str, Any]]: ...
    def promote(self, model: str, version: int, stage: str) -> Dict[str, Any]: ...
    def publish(
        self,
        model: str,
        pipeline: Pipeline,
        *,
        metrics: Mapping[str, float] = ...,
        stage: str = "candidate",
        producer: str = "python",
    ) -> Dict[str, Any]: ...
    def load(self, model: str, version: Optional[int] = None) -> Pipeline: ...
    @property
    def path(self) -> str: ...

def run(workflow: Union[str, PathLike], run_dir: Optional[Union[str, PathLike]] = None) -> Dict[str, Any]:
    """Runs a TOML workflow as ``eddy run`` does; returns ``workflow``, ``run_dir``,
    ``registry``, ``interrupted``, ``failed`` and ``state``."""

class Server:
    """A model server started by :func:`serve`; a context manager that stops it on exit."""

    @property
    def url(self) -> str:
        """``http://HOST:PORT``."""
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def models(self) -> List[str]:
        """The served model names (empty: every model of the registry)."""
    @property
    def running(self) -> bool: ...
    def predict_url(self, model: str) -> str:
        """``{url}/v1/models/{model}/predict``: POST ``{"rows": [{...}, ...]}``, get
        ``{"model", "version", "predictions", "probabilities"}``."""
    def stop(self) -> None:
        """Stops the server (in-flight requests finish); idempotent. A temporary registry made
        for a served pipeline or model file is removed."""
    def __enter__(self) -> "Server": ...
    def __exit__(self, *exc: Any) -> bool: ...

def serve(
    source: Union[Pipeline, Registry, str, PathLike],
    *,
    name: str = "model",
    models: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    poll_ms: int = 1000,
) -> Server:
    """Serves ``source`` over HTTP with ``eddy serve``'s server, in this process, until
    ``stop()``: a trained :class:`Pipeline` or a model file as the model ``name`` (published as
    the production version of a temporary registry), or a :class:`Registry` / registry
    directory with its ``models`` selectors (``"ctr@production"``, ``"ctr@3"``; default every
    model at its latest version, following new versions every ``poll_ms``). ``port=0`` picks a
    free port (see :attr:`Server.url`)."""
