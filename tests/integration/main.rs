//! Integration tests: the real binary, real processes, real SQLite files.

mod api;
mod audit;
mod check;
mod events;
mod files;
mod hygiene;
mod incarnations;
mod metrics;
mod programs;
mod restart;
mod service;
mod status;
mod util;
mod wrapper;
