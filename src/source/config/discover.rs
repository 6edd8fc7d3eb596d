//! Where the config file is found, and where a config's state goes by
//! default. Pure functions of their arguments (plus, for [`discover`],
//! whether the candidate files exist), so the CLI passes in the environment.

use std::path::{Path, PathBuf};

/// The file name looked for in each folder.
pub const FILE_NAME: &str = "pidwatch.toml";

/// The system-wide config file, the last candidate of [`discover`].
pub const SYSTEM_CONFIG: &str = "/etc/pidwatch/pidwatch.toml";

/// The state dir of a config run as root.
pub const ROOT_STATE_DIR: &str = "/var/lib/pidwatch";

/// The config file to use.
///
/// `explicit` (`--config`), made absolute against `cwd`, wins even when it
/// does not exist (loading it then reports the error). Otherwise the first
/// that exists (as any kind of file, so that a wrong kind is reported rather
/// than skipped) of: `<cwd>/pidwatch.toml`,
/// `<config home>/pidwatch/pidwatch.toml` (`config home`:
/// `xdg_config_home` when absolute, else `<home>/.config`), and
/// `/etc/pidwatch/pidwatch.toml`. `None` when none exists.
pub fn discover(
    explicit: Option<&Path>,
    cwd: &Path,
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    discover_in(
        explicit,
        cwd,
        xdg_config_home,
        home,
        Path::new(SYSTEM_CONFIG),
    )
}

fn discover_in(
    explicit: Option<&Path>,
    cwd: &Path,
    xdg_config_home: Option<&Path>,
    home: Option<&Path>,
    system: &Path,
) -> Option<PathBuf> {
    if let Some(explicit) = explicit {
        return Some(cwd.join(explicit));
    }
    let config_home = xdg_base(xdg_config_home, home, ".config");
    [
        Some(cwd.join(FILE_NAME)),
        config_home.map(|d| d.join("pidwatch").join(FILE_NAME)),
        Some(system.to_path_buf()),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.symlink_metadata().is_ok())
}

/// An XDG base folder: the variable's value when absolute (the XDG spec
/// says to ignore a relative one), else `<home>/<fallback>`.
fn xdg_base(var: Option<&Path>, home: Option<&Path>, fallback: &str) -> Option<PathBuf> {
    match var {
        Some(v) if v.is_absolute() => Some(v.to_path_buf()),
        _ => home.map(|h| h.join(fallback)),
    }
}

/// The state dir of a config whose `state_dir` is not given.
///
/// Root: `/var/lib/pidwatch`. Another user:
/// `<state home>/pidwatch/<config_name>` (`state home`: `xdg_state_home`
/// when absolute, else `<home>/.local/state`); `None` when neither is known.
/// `config_name` is [`ConfigFile::name`](super::ConfigFile::name), the file
/// stem.
pub fn default_state_dir(
    config_name: &str,
    is_root: bool,
    xdg_state_home: Option<&Path>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from(ROOT_STATE_DIR));
    }
    xdg_base(xdg_state_home, home, ".local/state").map(|d| d.join("pidwatch").join(config_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_order() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("cwd");
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");
        let system = dir.path().join("etc/pidwatch.toml");
        for d in [&cwd, &home.join(".config/pidwatch"), &xdg.join("pidwatch")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let find = |xdg: Option<&Path>| discover_in(None, &cwd, xdg, Some(&home), &system);

        assert_eq!(find(None), None);
        std::fs::create_dir_all(system.parent().unwrap()).unwrap();
        std::fs::write(&system, "").unwrap();
        assert_eq!(find(None), Some(system.clone()));
        let home_cfg = home.join(".config/pidwatch/pidwatch.toml");
        std::fs::write(&home_cfg, "").unwrap();
        assert_eq!(find(None), Some(home_cfg.clone()));
        assert_eq!(find(Some(Path::new("relative"))), Some(home_cfg.clone()));
        assert_eq!(find(Some(&xdg)), Some(system.clone()));
        let xdg_cfg = xdg.join("pidwatch/pidwatch.toml");
        std::fs::write(&xdg_cfg, "").unwrap();
        assert_eq!(find(Some(&xdg)), Some(xdg_cfg));
        std::fs::write(cwd.join("pidwatch.toml"), "").unwrap();
        assert_eq!(find(Some(&xdg)), Some(cwd.join("pidwatch.toml")));

        let explicit = discover_in(
            Some(Path::new("other/missing.toml")),
            &cwd,
            None,
            Some(&home),
            &system,
        );
        assert_eq!(explicit, Some(cwd.join("other/missing.toml")));
        let absolute = discover(Some(Path::new("/x/y.toml")), &cwd, None, None);
        assert_eq!(absolute, Some(PathBuf::from("/x/y.toml")));
    }

    #[test]
    fn state_dirs() {
        let home = Path::new("/home/u");
        assert_eq!(
            default_state_dir("pidwatch", true, None, Some(home)),
            Some(PathBuf::from("/var/lib/pidwatch"))
        );
        assert_eq!(
            default_state_dir("pidwatch", false, None, Some(home)),
            Some(PathBuf::from("/home/u/.local/state/pidwatch/pidwatch"))
        );
        assert_eq!(
            default_state_dir("celery", false, Some(Path::new("/st")), Some(home)),
            Some(PathBuf::from("/st/pidwatch/celery"))
        );
        assert_eq!(
            default_state_dir("celery", false, Some(Path::new("rel")), Some(home)),
            Some(PathBuf::from("/home/u/.local/state/pidwatch/celery"))
        );
        assert_eq!(default_state_dir("x", false, None, None), None);
    }
}
