//! Instance expansion: the `%` sequences of a worker's values, the
//! instances of `instances`, and the resolution of paths (`~`, relative to
//! the config file's folder).
//!
//! `%i` is the instance, `%f` the file an instance was made for (absolute),
//! `%h` the host name and `%%` a `%`. Any other `%` sequence passes through
//! untouched, so that programs with `%` sequences of their own (Celery's
//! `%n`, `%I`) receive them as written.

use std::path::{Component, Path, PathBuf};

/// What the `%` sequences of one instance stand for.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// `%i`: the instance; `None` when the worker has no `instances`.
    pub instance: Option<&'a str>,
    /// `%f`: the matched file; `None` unless `instances` is a glob.
    pub file: Option<&'a Path>,
    /// `%h`: the host name.
    pub host: &'a str,
}

/// Why a value cannot be expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandError {
    /// `%i` in a worker without `instances`.
    NoInstance,
    /// `%f` in a worker whose `instances` is not a glob of files.
    NoFile,
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExpandError::NoInstance => "`%i` needs `instances` (write `%%` for a literal `%`)",
            ExpandError::NoFile => {
                "`%f` needs `instances` to be a glob of files (write `%%` for a literal `%`)"
            }
        })
    }
}

/// `text` with `%i`, `%f`, `%h` and `%%` replaced; other `%` sequences (and
/// a trailing `%`) are kept as they are.
///
/// # Errors
///
/// [`ExpandError`] when `%i` or `%f` has no value in `vars`.
pub fn expand(text: &str, vars: &Vars<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('%') => out.push('%'),
            Some('i') => out.push_str(vars.instance.ok_or(ExpandError::NoInstance)?),
            Some('f') => {
                let file = vars.file.ok_or(ExpandError::NoFile)?;
                out.push_str(&file.to_string_lossy());
            }
            Some('h') => out.push_str(vars.host),
            _ => {
                out.push('%');
                continue;
            }
        }
        chars.next();
    }
    Ok(out)
}

/// Whether `name` is a valid worker or instance name: `[A-Za-z0-9_.-]+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `name` is a valid environment variable name, as the shell's:
/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A path of the config file made absolute: `~` and `~/x` under `home`,
/// a relative path under `base` (the config file's folder); `.` components
/// are dropped.
///
/// # Errors
///
/// A message when the path is empty, starts with `~` but `home` is unknown,
/// or names another user's home (`~user`, which is not expanded).
pub fn resolve_path(text: &str, base: &Path, home: Option<&Path>) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("expected a path, found an empty string".into());
    }
    let joined = if let Some(rest) = text.strip_prefix('~') {
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err("only `~` and `~/…` are expanded, not `~user`".into());
        }
        let home = home.ok_or("`~` needs a home directory, and HOME is not set")?;
        home.join(rest.trim_start_matches('/'))
    } else {
        base.join(text)
    };
    Ok(clean(&joined))
}

/// `path` without `.` components (`..` is kept: it may cross a symlink).
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The instances of a glob `instances`: one per matched regular file, named
/// by its file stem, sorted by name. Zero matches give zero instances.
///
/// `pattern` is resolved as a path (see [`resolve_path`]); the folder part
/// that comes from `base` or `home` is matched literally.
///
/// # Errors
///
/// A message for an invalid pattern, an unreadable folder, a file stem that
/// is not a valid instance name, or two files with the same stem.
pub fn glob_instances(
    pattern: &str,
    base: &Path,
    home: Option<&Path>,
) -> Result<Vec<(String, PathBuf)>, String> {
    glob::Pattern::new(pattern).map_err(|e| format!("invalid glob: {e}"))?;
    let prefix = if pattern.starts_with('~') {
        home.map(Path::to_path_buf)
    } else if Path::new(pattern).is_absolute() {
        None
    } else {
        Some(base.to_path_buf())
    };
    let full = match prefix {
        Some(prefix) => {
            let rest = pattern.trim_start_matches('~').trim_start_matches('/');
            let escaped = glob::Pattern::escape(&prefix.to_string_lossy());
            format!("{}/{rest}", escaped.trim_end_matches('/'))
        }
        None => pattern.to_string(),
    };
    if pattern.starts_with('~') {
        resolve_path(pattern, base, home)?;
    }
    let paths = glob::glob(&full).map_err(|e| format!("invalid glob: {e}"))?;
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for entry in paths {
        let path =
            entry.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
        if !path.is_file() {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_valid_name(&stem) {
            return Err(format!(
                "the matched file {:?} gives the instance name {:?}, which is not made of letters, digits, `_`, `.` and `-`",
                path.display().to_string(),
                stem
            ));
        }
        found.push((stem, clean(&path)));
    }
    found.sort();
    for pair in found.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!(
                "the matched files {:?} and {:?} give the same instance name {:?}",
                pair[0].1.display().to_string(),
                pair[1].1.display().to_string(),
                pair[0].0
            ));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(instance: Option<&'a str>, file: Option<&'a Path>) -> Vars<'a> {
        Vars {
            instance,
            file,
            host: "box",
        }
    }

    #[test]
    fn sequences_expand_and_others_pass_through() {
        let v = vars(Some("code"), Some(Path::new("/w/a.js")));
        assert_eq!(
            expand("-n %i@%h %f 100%% %n%I.log %", &v).unwrap(),
            "-n code@box /w/a.js 100% %n%I.log %"
        );
        assert_eq!(expand("%%i", &v).unwrap(), "%i");
    }

    #[test]
    fn missing_instance_or_file_is_an_error() {
        assert_eq!(
            expand("x %i", &vars(None, None)),
            Err(ExpandError::NoInstance)
        );
        assert_eq!(
            expand("x %f", &vars(Some("1"), None)),
            Err(ExpandError::NoFile)
        );
        assert_eq!(expand("%h", &vars(None, None)).unwrap(), "box");
    }

    #[test]
    fn paths_resolve_against_home_and_base() {
        let base = Path::new("/etc/pw");
        let home = Some(Path::new("/home/u"));
        assert_eq!(resolve_path("~", base, home).unwrap(), Path::new("/home/u"));
        assert_eq!(
            resolve_path("~/x/y", base, home).unwrap(),
            Path::new("/home/u/x/y")
        );
        assert_eq!(
            resolve_path("./run/a", base, home).unwrap(),
            Path::new("/etc/pw/run/a")
        );
        assert_eq!(resolve_path("/abs", base, home).unwrap(), Path::new("/abs"));
        assert!(resolve_path("~bob/x", base, home).is_err());
        assert!(resolve_path("~/x", base, None).is_err());
        assert!(resolve_path("", base, home).is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_name("code.v2-x_1"));
        assert!(!is_valid_name("a@b"));
        assert!(!is_valid_name(""));
        assert!(is_valid_env_name("_A1"));
        assert!(!is_valid_env_name("1A"));
        assert!(!is_valid_env_name("A-B"));
    }

    #[test]
    fn glob_matches_regular_files_by_stem() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cfg [1]");
        std::fs::create_dir_all(base.join("workers/sub.js")).unwrap();
        std::fs::write(base.join("workers/b.js"), "").unwrap();
        std::fs::write(base.join("workers/a.js"), "").unwrap();
        std::fs::write(base.join("workers/c.txt"), "").unwrap();
        let found = glob_instances("workers/*.js", &base, None).unwrap();
        assert_eq!(
            found,
            vec![
                ("a".to_string(), base.join("workers/a.js")),
                ("b".to_string(), base.join("workers/b.js")),
            ]
        );
        assert!(glob_instances("none/*.js", &base, None).unwrap().is_empty());
        std::fs::write(base.join("workers/a.ts"), "").unwrap();
        let err = glob_instances("workers/*", &base, None).unwrap_err();
        assert!(err.contains("same instance name"), "{err}");
        assert!(glob_instances("[", &base, None).is_err());
    }
}
