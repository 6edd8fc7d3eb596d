//! What the numbers were measured on, and with which builds.

use std::path::Path;
use std::process::Command;

/// The machine and the programs under test.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    /// Cores this process may run on.
    pub(crate) cores: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub(crate) cpu: String,
    /// `Linux <release> <arch>`.
    pub(crate) kernel: String,
    /// `MemTotal` of `/proc/meminfo`, GiB.
    pub(crate) memory_gib: f64,
    /// `pidwatch --version` and the git commit it was built from.
    pub(crate) pidwatch: String,
    /// `rustc -V`.
    pub(crate) rustc: String,
}

impl Machine {
    /// Reads the machine; `bin` is the pidwatch binary under test.
    pub(crate) fn describe(bin: &Path) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or("unknown".into(), |(_, v)| v.trim().to_string());
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel: format!(
                "{} {} {}",
                read("/proc/sys/kernel/ostype").trim(),
                read("/proc/sys/kernel/osrelease").trim(),
                std::env::consts::ARCH
            ),
            memory_gib: mem_kib / 1024.0 / 1024.0,
            pidwatch: format!("{}, {}", first_line(bin, &["--version"]), git_commit()),
            rustc: first_line(
                Path::new(&std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())),
                &["-V"],
            ),
        }
    }
}

/// The first line a program prints, or `unknown`.
pub(crate) fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `commit <short hash>`, marked when the sources differ from it.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(hash) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "not a git checkout".into();
    };
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "wrapper",
        "Cargo.toml",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("commit {hash} with uncommitted changes to src/ or wrapper/")
    } else {
        format!("commit {hash}")
    }
}
