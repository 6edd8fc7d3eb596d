//! `monitor.log`: the timestamped journal of every step, in the format of the
//! original `monitor-workers.py`:
//!
//! ```text
//! [2026-01-13T10:30:30.567890] [WARNING] Found 2 dead worker(s): Stream-B, Stream-E
//! ```
//!
//! The timestamp is local time with microseconds. The file is opened with
//! `O_APPEND` and each line goes out in one `write(2)`, so that lines of
//! concurrent writers never interleave; and with `O_NOFOLLOW`: a symlink
//! planted at its name is refused, not written through. Lines can also be
//! echoed to the console, with colour, or with sd-daemon priority prefixes
//! under systemd.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use owo_colors::OwoColorize;

/// The level of a line, as written in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine steps.
    Info,
    /// A restart that worked.
    Success,
    /// Something a person should look at.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    /// The bracketed name: `INFO`, `SUCCESS`, `WARNING`, `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Success => "SUCCESS",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }

    /// The sd-daemon(3) priority prefix for the journal.
    pub fn journal_prefix(self) -> &'static str {
        match self {
            Level::Error => "<3>",
            Level::Warning => "<4>",
            Level::Info | Level::Success => "<6>",
        }
    }
}

/// How console lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// `[LEVEL] message`, in colour when `true`.
    Plain(bool),
    /// `<6>[LEVEL] message` for the systemd journal (stdout is `JOURNAL_STREAM`).
    Journal,
}

impl Console {
    /// Formats a console line (no newline).
    pub fn format(self, level: Level, message: &str) -> String {
        let tag = format!("[{}]", level.as_str());
        match self {
            Console::Journal => format!("{}{tag} {message}", level.journal_prefix()),
            Console::Plain(false) => format!("{tag} {message}"),
            Console::Plain(true) => {
                let tag = match level {
                    Level::Info => tag.blue().to_string(),
                    Level::Success => tag.green().to_string(),
                    Level::Warning => tag.yellow().to_string(),
                    Level::Error => tag.red().to_string(),
                };
                format!("{tag} {message}")
            }
        }
    }

    /// Writes a console line: errors and warnings to stderr, the rest to stdout.
    ///
    /// Errors: the stream is closed or broken (EPIPE, EIO after a hangup).
    pub fn print(self, level: Level, message: &str) -> io::Result<()> {
        let line = self.format(level, message) + "\n";
        match level {
            Level::Error | Level::Warning => io::stderr().lock().write_all(line.as_bytes()),
            Level::Info | Level::Success => {
                let mut out = io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|_| out.flush())
            }
        }
    }
}

/// The monitor log file, with an optional console echo.
#[derive(Debug)]
pub struct MonitorLog {
    path: PathBuf,
    file: Option<File>,
    echo: Option<Console>,
}

/// Replaces control characters (a newline in a stream id, say) so that one
/// message is always one line.
///
/// Bidirectional overrides and other invisible format characters become
/// `?` too (see [`crate::output::is_hidden`]), and a message is cut at
/// [`MAX_LINE`] characters: what input a message quotes can neither reorder
/// a terminal line nor flood the log.
pub fn one_line(message: &str) -> String {
    let mut line: String = message
        .chars()
        .take(MAX_LINE)
        .map(|c| if crate::output::is_hidden(c) { '?' } else { c })
        .collect();
    if message.chars().nth(MAX_LINE).is_some() {
        line.push('…');
    }
    line
}

/// The longest message written, in characters.
pub const MAX_LINE: usize = 2000;

/// The file line for `message` at local time `at`, newline included.
pub fn format_line(at: chrono::DateTime<chrono::Local>, level: Level, message: &str) -> String {
    format!(
        "[{}] [{}] {}\n",
        at.format("%Y-%m-%dT%H:%M:%S%.6f"),
        level.as_str(),
        one_line(message)
    )
}

impl MonitorLog {
    /// Opens (creating it and its folder if needed) the log at `path` for
    /// appending, without following a symlink. `echo` also prints each line
    /// on the console.
    ///
    /// Errors: the folder or file cannot be created or opened; `path` is a
    /// symlink ([`crate::store::safe_fs::SymlinkRefused`], which names it).
    pub fn open(path: &Path, echo: Option<Console>) -> io::Result<MonitorLog> {
        let mut log = MonitorLog {
            path: path.to_path_buf(),
            file: None,
            echo,
        };
        log.reopen()?;
        Ok(log)
    }

    /// A log that only echoes; used when the file cannot be opened, so that a
    /// check still runs and says why.
    pub fn console_only(path: &Path, echo: Option<Console>) -> MonitorLog {
        MonitorLog {
            path: path.to_path_buf(),
            file: None,
            echo,
        }
    }

    /// Closes and opens the file again, e.g. after logrotate moved it away
    /// (SIGHUP).
    ///
    /// Errors: as [`MonitorLog::open`]; the old file stays closed.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        self.file = Some(crate::store::safe_fs::open_append_nofollow(&self.path)?);
        Ok(())
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets how lines are echoed on the console.
    pub fn set_echo(&mut self, echo: Option<Console>) {
        self.echo = echo;
    }

    /// Writes a line to the file and echoes it.
    pub fn log(&mut self, level: Level, message: &str) {
        self.write_file(level, message);
        if let Some(console) = self.echo
            && console.print(level, &one_line(message)).is_err()
        {
            // The terminal is gone (a closed pipe, a hung-up tty): the file
            // still gets every line, the console none.
            self.echo = None;
        }
    }

    /// Writes a line to the file only.
    pub fn file_only(&mut self, level: Level, message: &str) {
        self.write_file(level, message);
    }

    fn write_file(&mut self, level: Level, message: &str) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let line = format_line(chrono::Local::now(), level, message);
        // One write(2) on an O_APPEND file: the kernel appends it whole. A
        // failed write (disk full) must not stop the watchdog, so it is
        // reported on stderr and dropped.
        if let Err(e) = file.write_all(line.as_bytes()) {
            crate::output::print_stderr(&format!("pidwatch: writing {}: {e}", self.path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_format_matches_the_original() {
        let at = chrono::Local
            .with_ymd_and_hms(2026, 1, 13, 10, 30, 30)
            .unwrap()
            + chrono::TimeDelta::microseconds(567_890);
        assert_eq!(
            format_line(
                at,
                Level::Warning,
                "Found 2 dead worker(s): Stream-B, Stream-E"
            ),
            "[2026-01-13T10:30:30.567890] [WARNING] Found 2 dead worker(s): Stream-B, Stream-E\n"
        );
        assert_eq!(
            format_line(at, Level::Info, "evil\nStream"),
            "[2026-01-13T10:30:30.567890] [INFO] evil?Stream\n"
        );
    }

    #[test]
    fn journal_lines_carry_priorities_and_no_colour() {
        assert_eq!(Console::Journal.format(Level::Error, "x"), "<3>[ERROR] x");
        assert_eq!(
            Console::Journal.format(Level::Warning, "x"),
            "<4>[WARNING] x"
        );
        assert_eq!(
            Console::Journal.format(Level::Success, "x"),
            "<6>[SUCCESS] x"
        );
        assert_eq!(Console::Plain(false).format(Level::Info, "x"), "[INFO] x");
        assert!(
            Console::Plain(true)
                .format(Level::Info, "x")
                .contains('\u{1b}')
        );
    }
}
