//! What pidwatch writes and keeps: its state DB, `monitor.log` and the logs
//! of workers it starts ([`worker_log`]), and how it writes files without
//! following symlinks ([`safe_fs`]); the control API's audit trail
//! ([`audit`]).

pub mod audit;
pub mod monitor_log;
pub mod safe_fs;
pub mod statedb;
pub mod worker_log;
