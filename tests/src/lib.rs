//! Integration and end-to-end suites live in `tests/tests/`.
