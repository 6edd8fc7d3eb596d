//! The pure part of pidwatch: the snapshot types and `decide`.
//!
//! Nothing in this module reads the clock, the file system, `/proc` or
//! SQLite; `now` arrives inside the [`Snapshot`]. Adapters never get imported
//! here, so every rule can be tested with plain values.

mod decide;
mod exit;
mod incarnation;
mod snapshot;
#[cfg(test)]
mod tests;

pub use decide::{
    Action, Alive, Decision, MAX_STOP_ROUNDS, PIDFILE_GRACE, Policy, RestartAttempt, RestartPhase,
    START_TIME_TOLERANCE, WorkerDecision, decide, last_ending, liveness,
};
pub use exit::{ExitRecord, is_incarnation_id, parse_exit_file};
pub use incarnation::{Candidate, Ending, Incarnation, Member, Origin, ProcessId, Proof};
pub use snapshot::{
    InFlight, InvalidPidFile, PidFileReading, ProcessInfo, ProcessReading, ProgramState, Reason,
    RestartMode, RestartRecord, Snapshot, TaskCounts, Verdict, WorkerSnapshot,
};
