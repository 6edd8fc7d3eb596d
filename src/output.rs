//! Printing to the terminal: quiet on a closed pipe or a lost terminal.

use std::io::Write;

/// Writes to stdout; a closed pipe (`pidwatch check | head`) ends output
/// quietly, like any Unix tool.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes a line to stderr (a newline is added); a closed or broken stderr
/// is ignored, so that a lost terminal never stops the watchdog.
pub fn print_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(line.as_bytes())
        .and_then(|_| err.write_all(b"\n"));
}
