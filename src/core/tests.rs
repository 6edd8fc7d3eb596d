//! Table-driven tests of `decide`: every verdict and reason, backoff, cap,
//! stable runs, unknown dependencies and cycles. Plain values, no processes.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn alive(start: i64, state: char) -> Option<ProcessReading> {
    Some(ProcessReading::Alive(ProcessInfo {
        state,
        start_ticks: 0,
        start_time: t(start),
        pgrp: 100,
        session: 100,
        signalable: true,
    }))
}

fn tasks(total: u32, completed: u32, cancelled: u32) -> TaskCounts {
    TaskCounts {
        total,
        completed,
        cancelled,
        pending: total - completed - cancelled,
        ..TaskCounts::default()
    }
}

/// A started worker with an incomplete stream and a valid PID file written
/// at t(0), whose process is given.
fn worker(id: &str, process: Option<ProcessReading>) -> WorkerSnapshot {
    WorkerSnapshot {
        id: id.into(),
        pidfile: PidFileReading::Valid {
            pid: 100,
            mtime: t(0),
        },
        process,
        pidfile_fresh_until: None,
        started: true,
        tasks: tasks(2, 1, 0),
        dependencies: BTreeSet::new(),
        record: RestartRecord::default(),
        candidate: Candidate::Wrapper { invocation: None },
        incarnation: None,
        wrapper: None,
        members: Vec::new(),
        elsewhere: Vec::new(),
        exit: None,
        restart: None,
        program: None,
    }
}

const INC: &str = "0123456789abcdef0123456789abcdef";

/// A worker whose current incarnation's wrapper (PID 100, started at
/// `start`) lives; its PID file names the wrapper.
fn current(id: &str, start: i64) -> WorkerSnapshot {
    WorkerSnapshot {
        incarnation: Some(incarnation(None)),
        wrapper: alive(start, 'S'),
        candidate: Candidate::NotLooked,
        ..worker(id, alive(start, 'S'))
    }
}

fn incarnation(ending: Option<Ending>) -> Incarnation {
    Incarnation {
        id: INC.into(),
        origin: Origin::Spawned,
        wrapper: Some(ProcessId {
            pid: 100,
            start_ticks: 0,
        }),
        boot_id: "boot".into(),
        session: Some(100),
        cgroup: None,
        started_at: t(0),
        attempt: Some(1),
        ending,
    }
}

fn member(pid: i32) -> Member {
    Member {
        process: ProcessId {
            pid,
            start_ticks: 5,
        },
        comm: "claude".into(),
        incarnation: Some(INC.into()),
        proof: Proof::InvocationId,
    }
}

fn deps(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn snapshot(now: i64, workers: Vec<WorkerSnapshot>) -> Snapshot {
    Snapshot {
        now: t(now),
        workers,
    }
}

fn verdict_of(decision: &Decision, id: &str) -> (Verdict, Option<&'static str>) {
    let w = decision.workers.iter().find(|w| w.id == id).unwrap();
    (w.verdict, w.reason.as_ref().map(Reason::as_str))
}

#[test]
fn every_verdict_and_reason() {
    let gone = Some(ProcessReading::Gone);
    let complete_dep = WorkerSnapshot {
        tasks: tasks(1, 1, 0),
        pidfile: PidFileReading::Missing,
        process: None,
        ..worker("Done", None)
    };
    let incomplete_dep = WorkerSnapshot {
        pidfile: PidFileReading::Missing,
        process: None,
        ..worker("Busy", None)
    };
    type Case = (&'static str, WorkerSnapshot, Verdict, Option<&'static str>);
    let cases: Vec<Case> = vec![
        ("alive", worker("W", alive(0, 'S')), Verdict::Running, None),
        (
            "alive, running state",
            worker("W", alive(-50, 'R')),
            Verdict::Running,
            None,
        ),
        (
            "started within the tolerance after the PID file",
            worker("W", alive(1, 'S')),
            Verdict::Running,
            None,
        ),
        (
            "disk sleep is alive",
            worker("W", alive(0, 'D')),
            Verdict::Running,
            None,
        ),
        (
            "gone",
            worker("W", gone.clone()),
            Verdict::Dead,
            Some("no_such_process"),
        ),
        (
            "zombie",
            worker("W", alive(0, 'Z')),
            Verdict::Dead,
            Some("zombie"),
        ),
        (
            "dead state X",
            worker("W", alive(0, 'X')),
            Verdict::Dead,
            Some("zombie"),
        ),
        (
            "a zombie that started after the PID file is someone else",
            worker("W", alive(5, 'Z')),
            Verdict::Dead,
            Some("pid_reused"),
        ),
        (
            "started after the PID file",
            worker("W", alive(2, 'S')),
            Verdict::Dead,
            Some("pid_reused"),
        ),
        (
            "no PID file, log shows a run",
            WorkerSnapshot {
                pidfile: PidFileReading::Missing,
                process: None,
                ..worker("W", None)
            },
            Verdict::Dead,
            Some("no_pidfile"),
        ),
        (
            "invalid PID file",
            WorkerSnapshot {
                pidfile: PidFileReading::Invalid(InvalidPidFile::Empty),
                process: None,
                ..worker("W", None)
            },
            Verdict::Dead,
            Some("invalid_pidfile"),
        ),
        (
            "complete stream, dead process",
            WorkerSnapshot {
                tasks: tasks(3, 3, 0),
                ..worker("W", gone.clone())
            },
            Verdict::Completed,
            Some("no_such_process"),
        ),
        (
            "complete with a cancelled task",
            WorkerSnapshot {
                tasks: tasks(3, 2, 1),
                pidfile: PidFileReading::Missing,
                process: None,
                ..worker("W", None)
            },
            Verdict::Completed,
            Some("no_pidfile"),
        ),
        (
            "all cancelled is complete",
            WorkerSnapshot {
                tasks: tasks(2, 0, 2),
                ..worker("W", gone.clone())
            },
            Verdict::Completed,
            Some("no_such_process"),
        ),
        (
            "no tasks is never complete",
            WorkerSnapshot {
                tasks: tasks(0, 0, 0),
                ..worker("W", gone.clone())
            },
            Verdict::Dead,
            Some("no_such_process"),
        ),
        (
            "complete but still running is running",
            WorkerSnapshot {
                tasks: tasks(1, 1, 0),
                ..worker("W", alive(0, 'S'))
            },
            Verdict::Running,
            None,
        ),
        (
            "never started",
            WorkerSnapshot {
                pidfile: PidFileReading::Missing,
                process: None,
                started: false,
                ..worker("W", None)
            },
            Verdict::NotStarted,
            Some("no_pidfile"),
        ),
        (
            "waiting on an incomplete dependency",
            WorkerSnapshot {
                dependencies: deps(&["Busy"]),
                ..worker("W", gone.clone())
            },
            Verdict::Waiting,
            Some("no_such_process"),
        ),
        (
            "waiting on an unknown dependency",
            WorkerSnapshot {
                dependencies: deps(&["Nowhere"]),
                ..worker("W", gone.clone())
            },
            Verdict::Waiting,
            Some("no_such_process"),
        ),
        (
            "dependency complete: dead",
            WorkerSnapshot {
                dependencies: deps(&["Done"]),
                ..worker("W", gone.clone())
            },
            Verdict::Dead,
            Some("no_such_process"),
        ),
        (
            "self dependency is a cycle",
            WorkerSnapshot {
                dependencies: deps(&["W"]),
                ..worker("W", gone.clone())
            },
            Verdict::Waiting,
            Some("no_such_process"),
        ),
        (
            "given up by mark",
            WorkerSnapshot {
                record: RestartRecord {
                    attempts: 0,
                    given_up: true,
                    ..RestartRecord::default()
                },
                ..worker("W", gone.clone())
            },
            Verdict::GivenUp,
            Some("no_such_process"),
        ),
        (
            "given up by attempts at the cap",
            WorkerSnapshot {
                record: RestartRecord {
                    attempts: 2,
                    ..RestartRecord::default()
                },
                ..worker("W", gone.clone())
            },
            Verdict::GivenUp,
            Some("no_such_process"),
        ),
        (
            "one attempt below the cap is dead",
            WorkerSnapshot {
                record: RestartRecord {
                    attempts: 1,
                    ..RestartRecord::default()
                },
                ..worker("W", gone.clone())
            },
            Verdict::Dead,
            Some("no_such_process"),
        ),
        (
            "given up but alive again is running",
            WorkerSnapshot {
                record: RestartRecord {
                    given_up: true,
                    ..RestartRecord::default()
                },
                ..worker("W", alive(0, 'S'))
            },
            Verdict::Running,
            None,
        ),
    ];
    for (name, w, want, want_reason) in cases {
        let snap = snapshot(10, vec![complete_dep.clone(), incomplete_dep.clone(), w]);
        let decision = decide(&Policy::default(), &snap);
        assert_eq!(
            verdict_of(&decision, "W"),
            (want, want_reason),
            "case: {name}"
        );
        assert!(
            decision.actions.is_empty(),
            "no action without --auto-restart: {name}"
        );
    }
}

#[test]
fn dependency_problems_are_warned_about() {
    let gone = Some(ProcessReading::Gone);
    let a = WorkerSnapshot {
        dependencies: deps(&["B"]),
        tasks: tasks(1, 1, 0),
        ..worker("A", gone.clone())
    };
    let b = WorkerSnapshot {
        dependencies: deps(&["C"]),
        ..worker("B", gone.clone())
    };
    let c = WorkerSnapshot {
        dependencies: deps(&["B", "Ghost"]),
        ..worker("C", gone.clone())
    };
    let d = WorkerSnapshot {
        dependencies: deps(&["A"]),
        ..worker("D", gone)
    };
    let decision = decide(&Policy::default(), &snapshot(5, vec![a, b, c, d]));
    assert_eq!(verdict_of(&decision, "A").0, Verdict::Completed);
    assert_eq!(verdict_of(&decision, "B").0, Verdict::Waiting);
    assert_eq!(verdict_of(&decision, "C").0, Verdict::Waiting);
    // D depends on a complete stream that happens to be on no cycle itself.
    assert_eq!(verdict_of(&decision, "D").0, Verdict::Dead);
    let text = decision.warnings.join("\n");
    assert!(text.contains("C depends on unknown stream Ghost"), "{text}");
    assert!(text.contains("dependency cycle among B, C"), "{text}");
}

fn restarting() -> Policy {
    Policy {
        auto_restart: true,
        ..Policy::default()
    }
}

#[test]
fn backoff_doubles_from_the_second_attempt_and_is_capped() {
    let p = Policy {
        restart_delay: Duration::from_secs(5),
        max_restart_delay: Duration::from_secs(300),
        ..Policy::default()
    };
    let got: Vec<u64> = (1..=9).map(|k| p.backoff(k).as_secs()).collect();
    assert_eq!(got, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(p.backoff(200), Duration::from_secs(300), "no overflow");
    let zero = Policy {
        restart_delay: Duration::ZERO,
        ..p
    };
    assert_eq!(zero.backoff(5), Duration::ZERO);
}

#[test]
fn restart_plan_follows_backoff_and_cap() {
    let dead_with = |attempts: u32, last: Option<i64>, given_up: bool| WorkerSnapshot {
        record: RestartRecord {
            attempts,
            last_attempt: last.map(t),
            given_up,
            last_verdict: Some(Verdict::Dead),
        },
        ..worker("W", Some(ProcessReading::Gone))
    };
    let policy = Policy {
        max_restarts: 3,
        ..restarting()
    };
    // (case, worker, now, expected actions, expected next_due)
    let restart = |attempt| {
        vec![Action::Spawn {
            worker: "W".into(),
            restart: RestartAttempt {
                attempt,
                max: 3,
                counted: false,
            },
        }]
    };
    type Case = (&'static str, WorkerSnapshot, i64, Vec<Action>, Option<i64>);
    let cases: Vec<Case> = vec![
        (
            "first attempt at once",
            dead_with(0, None, false),
            0,
            restart(1),
            None,
        ),
        (
            "second waits 10 s: early",
            dead_with(1, Some(100), false),
            109,
            vec![],
            Some(110),
        ),
        (
            "second waits 10 s: due",
            dead_with(1, Some(100), false),
            110,
            restart(2),
            None,
        ),
        (
            "third waits 20 s",
            dead_with(2, Some(100), false),
            119,
            vec![],
            Some(120),
        ),
        (
            "cap reached: give up once",
            dead_with(3, Some(100), false),
            500,
            vec![Action::GiveUp {
                worker: "W".into(),
                max: 3,
            }],
            None,
        ),
        (
            "already given up: nothing",
            dead_with(3, Some(100), true),
            500,
            vec![],
            None,
        ),
    ];
    for (name, w, now, want, due) in cases {
        let decision = decide(&policy, &snapshot(now, vec![w]));
        assert_eq!(decision.actions, want, "case: {name}");
        assert_eq!(decision.next_due, due.map(t), "case: {name}");
    }
}

#[test]
fn stable_runs_reset_attempts() {
    let running = |start: i64| WorkerSnapshot {
        record: RestartRecord {
            attempts: 2,
            last_attempt: Some(t(start)),
            ..RestartRecord::default()
        },
        pidfile: PidFileReading::Valid {
            pid: 100,
            mtime: t(start),
        },
        ..current("W", start)
    };
    let policy = Policy {
        stable_after: Duration::from_secs(600),
        ..restarting()
    };
    let early = decide(&policy, &snapshot(599, vec![running(0)]));
    assert!(early.actions.is_empty());
    assert_eq!(early.next_due, Some(t(600)));
    let stable = decide(&policy, &snapshot(600, vec![running(0)]));
    assert_eq!(
        stable.actions,
        vec![Action::ResetAttempts { worker: "W".into() }]
    );
}

#[test]
fn nothing_is_planned_for_live_waiting_or_unstarted_workers() {
    let waiting = WorkerSnapshot {
        dependencies: deps(&["Ghost"]),
        ..worker("A", Some(ProcessReading::Gone))
    };
    let unstarted = WorkerSnapshot {
        started: false,
        pidfile: PidFileReading::Missing,
        process: None,
        ..worker("B", None)
    };
    let live = current("C", 0);
    let decision = decide(&restarting(), &snapshot(5, vec![waiting, unstarted, live]));
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
}

#[test]
fn verdict_changes_are_flagged_against_the_record() {
    let mut w = worker("W", Some(ProcessReading::Gone));
    w.record.last_verdict = Some(Verdict::Dead);
    let same = decide(&Policy::default(), &snapshot(1, vec![w.clone()]));
    assert!(!same.workers[0].changed);
    w.record.last_verdict = Some(Verdict::Running);
    let changed = decide(&Policy::default(), &snapshot(1, vec![w]));
    assert!(changed.workers[0].changed);
}

#[test]
fn an_invalid_pid_file_is_reported_but_never_restarted() {
    let w = WorkerSnapshot {
        pidfile: PidFileReading::Invalid(InvalidPidFile::Symlink),
        process: None,
        ..worker("W", None)
    };
    let decision = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(
        verdict_of(&decision, "W"),
        (Verdict::Dead, Some("invalid_pidfile"))
    );
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert!(
        decision.warnings[0].contains("W is not restarted while its PID file is invalid (symlink)"),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn durations_beyond_the_calendar_never_panic() {
    let huge = Policy {
        restart_delay: Duration::from_secs(u64::MAX / 4),
        max_restart_delay: Duration::MAX,
        stable_after: Duration::MAX,
        ..restarting()
    };
    let dead = WorkerSnapshot {
        record: RestartRecord {
            attempts: 1,
            last_attempt: Some(t(0)),
            ..RestartRecord::default()
        },
        ..worker("A", Some(ProcessReading::Gone))
    };
    let running = WorkerSnapshot {
        record: RestartRecord {
            attempts: 1,
            ..RestartRecord::default()
        },
        ..current("B", 0)
    };
    let mut far = current("C", 0);
    far.pidfile = PidFileReading::Valid {
        pid: 100,
        mtime: DateTime::<Utc>::MAX_UTC,
    };
    let decision = decide(&huge, &snapshot(10, vec![dead, running, far]));
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(verdict_of(&decision, "C").0, Verdict::Running);
}

#[test]
fn a_pid_file_naming_a_stranger_proves_nothing() {
    let w = WorkerSnapshot {
        candidate: Candidate::Foreign,
        ..worker("W", alive(0, 'S'))
    };
    let decision = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(
        verdict_of(&decision, "W"),
        (Verdict::Dead, Some("not_the_worker"))
    );
    // The restart spawns; it stops nothing, since no member is proved.
    assert!(matches!(decision.actions[..], [Action::Spawn { .. }]));
}

#[test]
fn a_live_wrapper_without_its_pid_file_is_running_with_a_warning() {
    let w = WorkerSnapshot {
        pidfile: PidFileReading::Missing,
        process: None,
        ..current("W", 0)
    };
    let decision = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&decision, "W"), (Verdict::Running, None));
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert!(
        decision.warnings[0].contains("PID file of worker W is missing"),
        "{:?}",
        decision.warnings
    );
}

#[test]
fn an_adoptable_wrapper_is_adopted_and_earlier_survivors_stopped() {
    let w = WorkerSnapshot {
        members: vec![member(300)],
        ..worker("W", alive(0, 'S'))
    };
    let decision = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&decision, "W"), (Verdict::Running, None));
    assert!(matches!(
        &decision.actions[..],
        [Action::Adopt { wrapper, .. }, Action::StopOld { members, restart: None, .. }]
            if wrapper.pid == 100 && members[0].process.pid == 300
    ));
}

#[test]
fn orphans_are_stopped_before_the_spawn_and_the_restart_steps_along() {
    let orphaned = |restart: Option<InFlight>, members: Vec<Member>| WorkerSnapshot {
        incarnation: Some(incarnation(None)),
        wrapper: Some(ProcessReading::Gone),
        pidfile: PidFileReading::Missing,
        process: None,
        members,
        restart,
        ..worker("W", None)
    };
    // Pending: the wrapper died, its worker lives: end the incarnation, and
    // stop the worker first (attempt 1, counted now).
    let d = decide(
        &restarting(),
        &snapshot(5, vec![orphaned(None, vec![member(300)])]),
    );
    assert_eq!(verdict_of(&d, "W"), (Verdict::Dead, Some("orphaned")));
    assert!(matches!(&d.actions[..], [
        Action::EndIncarnation { ending, .. },
        Action::StopOld { restart: Some(RestartAttempt { attempt: 1, counted: false, .. }), .. },
    ] if !ending.stopped));
    // Stopping the old incarnation worked: spawn, the attempt already counted.
    let in_flight = InFlight {
        attempt: 1,
        phase: RestartPhase::StoppingOld,
        stop_rounds: 1,
    };
    let mut done = orphaned(Some(in_flight), vec![]);
    done.incarnation = Some(incarnation(Some(Ending {
        at: t(5),
        exit_status: None,
        signal: None,
        stopped: false,
    })));
    let d = decide(&restarting(), &snapshot(6, vec![done]));
    assert!(
        matches!(
            &d.actions[..],
            [Action::Spawn {
                restart: RestartAttempt {
                    attempt: 1,
                    counted: true,
                    ..
                },
                ..
            }]
        ),
        "{:?}",
        d.actions
    );
    // Something forked meanwhile: another round, then give the attempt up.
    let again = orphaned(Some(in_flight), vec![member(301)]);
    let d = decide(&restarting(), &snapshot(6, vec![again]));
    assert!(
        matches!(&d.actions[..], [_, Action::StopOld { .. }]),
        "{:?}",
        d.actions
    );
    let stubborn = orphaned(
        Some(InFlight {
            stop_rounds: MAX_STOP_ROUNDS,
            ..in_flight
        }),
        vec![member(301)],
    );
    let d = decide(&restarting(), &snapshot(6, vec![stubborn]));
    assert!(
        matches!(
            &d.actions[..],
            [_, Action::RestartFailed { attempt: 1, .. }]
        ),
        "{:?}",
        d.actions
    );
}

#[test]
fn a_deliberate_stop_is_not_restarted_and_a_crash_is() {
    let ended = |signal: &str, stopped: bool| WorkerSnapshot {
        incarnation: Some(incarnation(Some(Ending {
            at: t(1),
            exit_status: Some(143),
            signal: Some(signal.into()),
            stopped,
        }))),
        wrapper: Some(ProcessReading::Gone),
        pidfile: PidFileReading::Missing,
        process: None,
        ..worker("W", None)
    };
    let d = decide(&restarting(), &snapshot(5, vec![ended("TERM", true)]));
    assert_eq!(verdict_of(&d, "W"), (Verdict::Stopped, Some("stopped")));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(!d.has_failures());
    let d = decide(&restarting(), &snapshot(5, vec![ended("KILL", false)]));
    assert_eq!(verdict_of(&d, "W"), (Verdict::Dead, Some("no_pidfile")));
    assert!(matches!(d.actions[..], [Action::Spawn { .. }]));
}

#[test]
fn an_incarnation_being_spawned_counts_as_running() {
    let mut inc = incarnation(None);
    inc.wrapper = None;
    let w = WorkerSnapshot {
        incarnation: Some(inc),
        pidfile: PidFileReading::Missing,
        process: None,
        members: vec![member(300)],
        ..worker("W", None)
    };
    let d = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&d, "W"), (Verdict::Running, None));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

#[test]
fn a_pid_file_being_written_is_looked_at_again_not_reported() {
    for pidfile in [
        PidFileReading::Invalid(InvalidPidFile::Empty),
        PidFileReading::Invalid(InvalidPidFile::NotANumber("12 3".into())),
    ] {
        let w = WorkerSnapshot {
            pidfile,
            process: None,
            pidfile_fresh_until: Some(t(7)),
            ..worker("W", None)
        };
        let d = decide(&restarting(), &snapshot(6, vec![w.clone()]));
        assert_eq!(verdict_of(&d, "W"), (Verdict::Running, None));
        assert!(d.actions.is_empty() && !d.has_failures());
        assert_eq!(
            d.next_due,
            Some(t(7)),
            "looked at again when the grace ends"
        );
        // After the grace, it is what it is.
        let stale = WorkerSnapshot {
            pidfile_fresh_until: None,
            ..w
        };
        let d = decide(&restarting(), &snapshot(8, vec![stale]));
        assert_eq!(
            verdict_of(&d, "W"),
            (Verdict::Dead, Some("invalid_pidfile"))
        );
    }
}

#[test]
fn a_live_wrapper_the_pid_file_does_not_name_blocks_a_restart() {
    // The PID file is gone, but a worker of W carrying its stream marker
    // runs under a live wrapper pidwatch does not know.
    let w = WorkerSnapshot {
        pidfile: PidFileReading::Missing,
        process: None,
        elsewhere: vec![member(300)],
        ..worker("W", None)
    };
    let d = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&d, "W"), (Verdict::Running, None));
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(d.warnings[0].contains("does not name"), "{:?}", d.warnings);
}

#[test]
fn a_deliberate_stop_with_a_straggler_stays_a_stop() {
    let w = WorkerSnapshot {
        incarnation: Some(incarnation(Some(Ending {
            at: t(1),
            exit_status: Some(143),
            signal: Some("TERM".into()),
            stopped: true,
        }))),
        wrapper: Some(ProcessReading::Gone),
        pidfile: PidFileReading::Missing,
        process: None,
        members: vec![member(300)],
        ..worker("W", None)
    };
    let d = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&d, "W"), (Verdict::Stopped, Some("stopped")));
    assert!(
        matches!(&d.actions[..], [Action::StopOld { restart: None, .. }]),
        "the straggler is stopped, nothing started: {:?}",
        d.actions
    );
}

/// A program whose last incarnation ended as `ending` says, with `state`.
fn program_ended(ending: Ending, state: ProgramState) -> WorkerSnapshot {
    WorkerSnapshot {
        incarnation: Some(incarnation(Some(ending))),
        wrapper: Some(ProcessReading::Gone),
        pidfile: PidFileReading::Missing,
        process: None,
        tasks: TaskCounts::default(),
        program: Some(state),
        ..worker("P", None)
    }
}

fn program_state(restart: RestartMode) -> ProgramState {
    ProgramState {
        restart,
        policy: restarting(),
        ready: None,
        unhealthy: false,
        start_requested: false,
    }
}

fn ending(exit_status: Option<i32>, signal: Option<&str>, stopped: bool) -> Ending {
    Ending {
        at: t(1),
        exit_status,
        signal: signal.map(str::to_string),
        stopped,
    }
}

#[test]
fn a_program_follows_its_restart_mode() {
    let judge = |restart, e: Ending| {
        let d = decide(
            &restarting(),
            &snapshot(5, vec![program_ended(e, program_state(restart))]),
        );
        let spawn = matches!(d.actions[..], [Action::Spawn { .. }]);
        (verdict_of(&d, "P").0, spawn)
    };
    let clean = || ending(Some(0), None, false);
    let failed = || ending(Some(1), None, false);
    assert_eq!(
        judge(RestartMode::OnFailure, clean()),
        (Verdict::Completed, false)
    );
    assert_eq!(
        judge(RestartMode::OnFailure, failed()),
        (Verdict::Dead, true)
    );
    assert_eq!(judge(RestartMode::Always, clean()), (Verdict::Dead, true));
    assert_eq!(judge(RestartMode::Never, failed()), (Verdict::Dead, false));
    let stop = || ending(None, Some("TERM"), true);
    assert_eq!(
        judge(RestartMode::Always, stop()),
        (Verdict::Stopped, false)
    );
}

#[test]
fn a_start_asked_for_overrides_a_stop_and_waits_for_dependencies() {
    let asked = ProgramState {
        start_requested: true,
        ..program_state(RestartMode::OnFailure)
    };
    let stopped = program_ended(ending(None, Some("TERM"), true), asked.clone());
    let d = decide(&restarting(), &snapshot(5, vec![stopped.clone()]));
    assert_eq!(verdict_of(&d, "P").0, Verdict::NotStarted);
    assert!(matches!(&d.actions[..], [Action::Start { worker }] if worker == "P"));
    // A dependency not running: it waits, nothing is started.
    let dep = WorkerSnapshot {
        tasks: TaskCounts::default(),
        program: Some(program_state(RestartMode::OnFailure)),
        ..worker("D", None)
    };
    let waiting = WorkerSnapshot {
        dependencies: deps(&["D"]),
        ..stopped.clone()
    };
    let d = decide(&restarting(), &snapshot(5, vec![dep, waiting]));
    assert_eq!(verdict_of(&d, "P").0, Verdict::Waiting);
    assert!(
        !d.actions.iter().any(|a| a.worker() == "P"),
        "{:?}",
        d.actions
    );
    // Never a second one while a process of the last one lives.
    let straggler = WorkerSnapshot {
        members: vec![member(300)],
        ..stopped
    };
    let d = decide(&restarting(), &snapshot(5, vec![straggler]));
    assert!(
        matches!(&d.actions[..], [Action::StopOld { restart: None, .. }]),
        "{:?}",
        d.actions
    );
}

#[test]
fn an_unhealthy_incarnation_stopped_by_pidwatch_is_restarted_not_left_stopped() {
    let unhealthy = ProgramState {
        unhealthy: true,
        ..program_state(RestartMode::OnFailure)
    };
    // Its exit file says SIGTERM, which alone reads as a deliberate stop.
    let w = program_ended(ending(None, Some("TERM"), false), unhealthy);
    let w = WorkerSnapshot {
        exit: Some(ending(Some(143), Some("TERM"), true)),
        ..w
    };
    let d = decide(&restarting(), &snapshot(5, vec![w]));
    assert_eq!(verdict_of(&d, "P"), (Verdict::Dead, Some("unhealthy")));
    assert!(
        matches!(d.actions[..], [Action::Spawn { .. }]),
        "{:?}",
        d.actions
    );
}
