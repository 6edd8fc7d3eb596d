//! What pidwatch writes and keeps: its state DB and `monitor.log`, and how
//! it writes files without following symlinks ([`safe_fs`]).

pub mod monitor_log;
pub mod safe_fs;
pub mod statedb;
