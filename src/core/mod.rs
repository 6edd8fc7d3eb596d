//! The pure part of pidwatch: the snapshot types and `decide`.
//!
//! Nothing in this module reads the clock, the file system, `/proc` or
//! SQLite; `now` arrives inside the [`Snapshot`]. Adapters never get imported
//! here, so every rule can be tested with plain values.

mod decide;
mod snapshot;
#[cfg(test)]
mod tests;

pub use decide::{
    Action, Decision, Policy, START_TIME_TOLERANCE, WorkerDecision, decide, liveness,
};
pub use snapshot::{
    InvalidPidFile, PidFileReading, ProcessInfo, ProcessReading, Reason, RestartRecord, Snapshot,
    TaskCounts, Verdict, WorkerSnapshot,
};
