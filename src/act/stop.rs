//! Stopping a program from the config file on purpose (`pidwatch stop`,
//! a stop asked of the monitor, an unhealthy incarnation).

use std::time::Instant;

use crate::source::config::ProgramSpec;

/// Stops one program's incarnation, whose live processes are `members`
/// (and `cgroup`, when it runs in one): adopt mode's `stop` command, or
/// its `stop_signal`; what is left after `stop_timeout` gets SIGKILL.
/// Blocks until they are gone or killed; returns what it did, in words.
///
/// Runs the stop command as a child of the calling thread, reaped there.
pub fn stop_program(
    procfs: &crate::observe::procfs::Procfs,
    spec: &ProgramSpec,
    members: &[crate::core::Member],
    cgroup: Option<&str>,
) -> String {
    let cgroups: Vec<String> = cgroup.into_iter().map(str::to_string).collect();
    let mut said = String::new();
    if let Some(stop) = spec.adopt.as_ref().and_then(|a| a.stop.as_ref()) {
        let started = Instant::now();
        let outcome = crate::act::probe::run(stop, &spec.env, &spec.cwd, spec.stop_timeout);
        said = format!(
            "stop command: {}; ",
            if outcome.passed() {
                "done".into()
            } else {
                format!("{outcome:?}")
            }
        );
        // What is left of it gets the rest of stop_timeout to go, then
        // SIGKILL (a warm shutdown may outlast the stop command).
        let report = crate::act::spawn::stop_members_with(
            procfs,
            members,
            &cgroups,
            None,
            spec.stop_timeout.saturating_sub(started.elapsed()),
        );
        if !report.killed.is_empty() {
            said.push_str(&format!("SIGKILL to {:?}", report.killed));
        }
        return said;
    }
    let signal = nix::sys::signal::Signal::try_from(spec.stop_signal.number)
        .unwrap_or(nix::sys::signal::Signal::SIGTERM);
    let report = crate::act::spawn::stop_members_with(
        procfs,
        members,
        &cgroups,
        Some(signal),
        spec.stop_timeout,
    );
    said.push_str(&format!(
        "SIG{} to {:?}",
        spec.stop_signal.name, report.terminated
    ));
    if !report.killed.is_empty() {
        said.push_str(&format!(
            "; SIGKILL after {} s to {:?}",
            spec.stop_timeout.as_secs_f64(),
            report.killed
        ));
    }
    for cg in &report.cgroups_killed {
        said.push_str(&format!("; cgroup.kill on {cg}"));
    }
    said
}
