//! The configuration file: every flag of the command line, by its long
//! name, in TOML (`max-connections = 256`, `plaintext = "deny"`,
//! `unsafe-no-fsync = false`).
//!
//! A flag beats its environment variable, which beats the file, which beats
//! the default. The file is turned into command-line arguments placed before
//! the real ones, so clap parses and checks its values like any flag's and
//! a flag given again on the command line replaces it; a key whose
//! environment variable is set is left out, so the environment beats the
//! file. Each value is checked alone first, so a bad one is reported with
//! the file, the line and the key.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the server looks for a configuration file when none is given.
pub const DEFAULT_CONFIG: &str = "/etc/backup-server/config.toml";

/// Why a configuration file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Unreadable { path: PathBuf, reason: String },
    /// The file is not TOML.
    Syntax { path: PathBuf, reason: String },
    /// A key that is no flag of the server's.
    UnknownKey { path: PathBuf, line: usize, key: String },
    /// A value the flag does not take.
    BadValue { path: PathBuf, line: usize, key: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unreadable { path, reason } => {
                write!(f, "cannot read the configuration file {}: {reason}", path.display())
            }
            ConfigError::Syntax { path, reason } => write!(f, "{}: {reason}", path.display()),
            ConfigError::UnknownKey { path, line, key } => write!(
                f,
                "{} line {line}: unknown key `{key}`; the keys are the long flags that `backup-server --help` \
                 lists, without the leading --",
                path.display()
            ),
            ConfigError::BadValue { path, line, key, reason } => {
                write!(f, "{} line {line}: key `{key}`: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Flags the file may not set: they choose the file, or print and exit.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// Reads `path` and turns it into arguments for `command` (to go before the
/// real ones). `env_set` says whether an environment variable is set.
pub fn read(
    command: &clap::Command,
    path: &Path,
    env_set: impl Fn(&std::ffi::OsStr) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
    to_args(command, path, &text, env_set)
}

/// [`read`] on text already read.
pub fn to_args(
    command: &clap::Command,
    path: &Path,
    text: &str,
    env_set: impl Fn(&std::ffi::OsStr) -> bool,
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        reason: e.to_string().trim_end().replace('\n', " "),
    })?;
    // Values are checked alone, without the environment, so an error is
    // the file's own.
    let checker = command.clone().mut_args(|arg| arg.env(None::<&str>)).args_override_self(true);
    let mut args = Vec::new();
    for (key, value) in &table {
        let line = line_of(text, key);
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()) && !NOT_IN_FILE.contains(&key.as_str()))
            .ok_or_else(|| ConfigError::UnknownKey { path: path.to_path_buf(), line, key: key.clone() })?;
        let bad = |reason: String| ConfigError::BadValue {
            path: path.to_path_buf(),
            line,
            key: key.clone(),
            reason,
        };
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let flag = match (value, is_switch) {
            (toml::Value::Boolean(true), true) => Some(OsString::from(format!("--{key}"))),
            (toml::Value::Boolean(false), true) => None,
            (_, true) => return Err(bad("takes true or false".into())),
            // A switch that also takes a value (`--unsafe-no-fsync=false`).
            (toml::Value::Boolean(b), false) => Some(OsString::from(format!("--{key}={b}"))),
            (toml::Value::String(s), false) => Some(OsString::from(format!("--{key}={s}"))),
            (toml::Value::Integer(n), false) => Some(OsString::from(format!("--{key}={n}"))),
            (toml::Value::Float(x), false) => Some(OsString::from(format!("--{key}={x}"))),
            // A list, for flags that take several values (`trusted-proxy`).
            (toml::Value::Array(items), false) if items.iter().all(|i| i.is_str()) => {
                let items: Vec<&str> = items.iter().filter_map(toml::Value::as_str).collect();
                Some(OsString::from(format!("--{key}={}", items.join(","))))
            }
            (_, false) => return Err(bad("takes a string, a number or a list of strings".into())),
        };
        let Some(flag) = flag else { continue };
        if let Err(e) = checker.clone().try_get_matches_from([OsString::from("backup-server"), flag.clone()])
        {
            return Err(bad(clap_reason(&e)));
        }
        if arg.get_env().is_some_and(&env_set) {
            continue;
        }
        args.push(flag);
    }
    Ok(args)
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The line (from 1) where `key` is set, or 0 if it cannot be told.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix('"').unwrap_or(line);
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches('"').trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// A configuration file that sets nothing, each key commented out with its
/// help and its default, for packages and for `backup-server config`.
pub fn template(command: &clap::Command) -> String {
    let mut out = String::from(
        "# backup-server configuration: every key is a long flag of `backup-server --help`.\n\
         # A flag on the command line beats its environment variable, which beats this\n\
         # file, which beats the default.\n",
    );
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_IN_FILE.contains(&long) {
            continue;
        }
        out.push('\n');
        if let Some(help) = arg.get_help() {
            for line in textwrap(&help.to_string(), 76) {
                out.push_str(&format!("# {line}\n"));
            }
        }
        let default = arg.get_default_values().first().map(|d| d.to_string_lossy().into_owned());
        let example = match (arg.get_action(), default) {
            (clap::ArgAction::SetTrue, _) => "false".to_string(),
            (_, Some(d)) if d.parse::<i64>().is_ok() || d == "true" || d == "false" => d,
            (_, Some(d)) => format!("{d:?}"),
            (_, None) => "\"\"".to_string(),
        };
        out.push_str(&format!("#{long} = {example}\n"));
    }
    out
}

/// Words of `text` in lines of at most `width` characters.
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn command() -> Command {
        Command::new("backup-server")
            .arg(
                Arg::new("idle-timeout")
                    .long("idle-timeout")
                    .env("T_IDLE")
                    .value_parser(clap::value_parser!(u64)),
            )
            .arg(Arg::new("plaintext").long("plaintext").env("T_PLAIN").value_parser(["allow", "deny"]))
            .arg(Arg::new("unsafe-no-fsync").long("unsafe-no-fsync").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config"))
    }

    fn args(text: &str, env: &[&str]) -> Result<Vec<String>, ConfigError> {
        let env_set = |name: &std::ffi::OsStr| env.iter().any(|e| name == *e);
        to_args(&command(), Path::new("/etc/x.toml"), text, env_set)
            .map(|a| a.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_become_flags_and_switches_appear_only_when_true() {
        let text = "idle-timeout = 30\nplaintext = \"deny\"\nunsafe-no-fsync = true\n";
        assert_eq!(args(text, &[]).unwrap(), ["--idle-timeout=30", "--plaintext=deny", "--unsafe-no-fsync"]);
        assert_eq!(args("unsafe-no-fsync = false\n", &[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_key_whose_environment_variable_is_set_is_left_to_the_environment() {
        assert_eq!(
            args("idle-timeout = 30\nplaintext = \"deny\"\n", &["T_IDLE"]).unwrap(),
            ["--plaintext=deny"]
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_the_line_and_the_key() {
        let err = args("# comment\nidle-timeout = 30\nidle-timout = 5\n", &[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey { path: "/etc/x.toml".into(), line: 3, key: "idle-timout".into() }
        );
        assert!(err.to_string().starts_with("/etc/x.toml line 3: unknown key `idle-timout`"), "{err}");
        assert!(matches!(args("config = \"/other\"\n", &[]), Err(ConfigError::UnknownKey { line: 1, .. })));
    }

    #[test]
    fn a_bad_value_names_the_file_the_line_the_key_and_what_is_wrong() {
        let err = args("\n\nidle-timeout = \"soon\"\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("/etc/x.toml line 3: key `idle-timeout`: invalid value 'soon'"), "{err}");
        let err = args("plaintext = \"maybe\"\n", &[]).unwrap_err().to_string();
        assert!(err.contains("line 1: key `plaintext`") && err.contains("maybe"), "{err}");
        let err = args("unsafe-no-fsync = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(err.ends_with("key `unsafe-no-fsync`: takes true or false"), "{err}");
        let err = args("idle-timeout = [1, 2]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("takes a string, a number or a list of strings"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_toml_says_where() {
        let err = args("idle-timeout = = 3\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("/etc/x.toml: ") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn the_template_sets_nothing_and_reads_back() {
        let text = template(&command());
        assert!(text.contains("#idle-timeout = \"\"") && text.contains("#unsafe-no-fsync = false"), "{text}");
        assert!(!text.contains("#config"));
        assert_eq!(args(&text, &[]).unwrap(), Vec::<String>::new());
    }
}
