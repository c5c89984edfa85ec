//! The one Python exception of the package, [`EddyError`] (a `ValueError`), carrying the
//! library's own messages (key names, columns, rows, file positions) unchanged.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

pyo3::create_exception!(
    eddy,
    EddyError,
    PyValueError,
    "An error of eddy's engine: bad params, a missing or mistyped column, a corrupt model file, a workflow spec error. The message is the library's, naming the key, column, row or file position."
);

/// Any library error as an [`EddyError`] with its message.
pub fn eddy_err(e: impl std::fmt::Display) -> PyErr {
    EddyError::new_err(e.to_string())
}
