//! Integration tests: the real binary, real processes, real SQLite files.

mod check;
mod util;
