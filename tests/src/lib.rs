//! kugetsu's end-to-end tests across crates; everything is under `tests/` (see README.md).
