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

/// The most characters of one value quoted from input (an id, a title, a
/// path, a JSON value) in a message.
pub const MAX_QUOTE: usize = 80;

/// Quotes a value read from input for a message: in double quotes, at most
/// [`MAX_QUOTE`] characters (then `…` and how many bytes were left out),
/// with control characters and the invisible format characters that can
/// reorder or hide text on a terminal (bidirectional overrides and
/// isolates such as U+202E, zero-width characters, U+FEFF) escaped as
/// `\u{…}`.
pub fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for (shown, (i, c)) in text.char_indices().enumerate() {
        if shown == MAX_QUOTE {
            out.push_str(&format!("\"… ({} more bytes)", text.len() - i));
            return out;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if is_hidden(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Characters that must never reach a terminal or a log raw: controls, and
/// the format characters that reorder or hide text (Trojan Source).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}' | '\u{061C}')
}

/// A worker's own output made safe for a terminal: hidden characters (see
/// [`is_hidden`]) escaped as `\u{…}`, tabs kept.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if is_hidden(c) && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// [`escape_controls`], keeping newlines.
pub fn escape_controls_keep_newlines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(body) => format!("{}\n", escape_controls(body)),
            None => escape_controls(line),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_bounded_and_show_what_hides() {
        assert_eq!(quote("Stream-A"), "\"Stream-A\"");
        assert_eq!(quote("a\u{202E}b\nc\"d"), "\"a\\u{202e}b\\u{a}c\\\"d\"");
        let long = "x".repeat(100_000);
        let q = quote(&long);
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with("… (99920 more bytes)"), "{q}");
    }
}
