//! What pidwatch writes and keeps: its state DB and `monitor.log`.

pub mod monitor_log;
pub mod statedb;
