//! Where the server is: `--server`, else `server.info` in the current folder,
//! else next to the executable, else the server's default address.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::{Path, PathBuf};

use backup_core::wire::DEFAULT_PORT;

use crate::framing::Framing;

/// Used when nothing says otherwise: where `backup-server` listens by default.
pub const DEFAULT_SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, DEFAULT_PORT));

/// The name of the file that holds the server's address.
pub const SERVER_INFO: &str = "server.info";

/// A server address, resolved, with where it came from for messages.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    pub text: String,
    pub addrs: Vec<SocketAddr>,
    pub source: String,
    /// The framing `server.info` names after the address (`block` or
    /// `stream`), if it names one.
    pub framing: Option<Framing>,
}

/// Finds and resolves the server address.
pub fn resolve(flag: Option<&str>, cwd: &Path, exe_dir: Option<&Path>) -> Result<ServerAddress, String> {
    let (text, source, framing) = match flag {
        Some(text) => (text.trim().to_string(), "--server".to_string(), None),
        None => match find_server_info(cwd, exe_dir)? {
            Some(path) => {
                let content = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let framing = server_info_framing(&content);
                (parse_server_info(&content, &path)?, path.display().to_string(), framing)
            }
            None => (DEFAULT_SERVER.to_string(), "the default".to_string(), None),
        },
    };
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve server address {text:?} (from {source}): {e}; expected HOST:PORT such as {DEFAULT_SERVER} or [::1]:{DEFAULT_PORT}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("server address {text:?} (from {source}) resolves to nothing"));
    }
    Ok(ServerAddress { text, addrs, source, framing })
}

/// The first `server.info` there is. One that exists but is not a regular
/// file (a FIFO, a device, a folder) is an error rather than skipped: the
/// user meant it, and opening a FIFO would block.
fn find_server_info(cwd: &Path, exe_dir: Option<&Path>) -> Result<Option<PathBuf>, String> {
    for path in [Some(cwd), exe_dir].into_iter().flatten().map(|dir| dir.join(SERVER_INFO)) {
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            Ok(_) => {
                require_regular_file(&path)?;
                return Ok(Some(path));
            }
        }
    }
    Ok(None)
}

/// Refuses, without opening it, a configuration file that is not a regular
/// file: reading a FIFO blocks until someone writes to it, and a device or
/// a folder holds no configuration.
pub fn require_regular_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else {
        // Missing or unreadable: reading it says so with the reason.
        return Ok(());
    };
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(format!("{} is {what}, not a text file; replace it with a regular file", path.display()))
}

/// The first non-blank line of a `server.info`.
fn first_line(content: &str) -> &str {
    // Editors on Windows start UTF-8 files with a byte order mark.
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    content.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// The word after the address that names the framing: `127.0.0.1:1234
/// block`. The project whose server uses blocks reads its `server.info` by
/// fixed columns (`info[:9]`, `info[10:14]`), so the word does not disturb it.
pub fn server_info_framing(content: &str) -> Option<Framing> {
    match first_line(content).split_whitespace().last()? {
        "block" => Some(Framing::Block),
        "stream" => Some(Framing::Stream),
        _ => None,
    }
}

/// Reads `IP:port` or `IP port` from the first non-blank line, and an
/// optional framing word after it.
pub fn parse_server_info(content: &str, path: &Path) -> Result<String, String> {
    let line = first_line(content);
    let address = match server_info_framing(content) {
        Some(_) => line.rsplit_once(char::is_whitespace).map_or(line, |(address, _)| address.trim_end()),
        None => line,
    };
    let expected = format!("expected one line of the form IP:port or IP port, for example {DEFAULT_SERVER}");
    let bad = || format!("{}: cannot read the server address from {line:?}; {expected}", path.display());
    let mut words = address.split_whitespace();
    let text = match (words.next(), words.next(), words.next()) {
        (Some(host), Some(port), None) => {
            port.parse::<u16>().map_err(|_| bad())?;
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        (Some(addr), None, None) => {
            let (_, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            port.parse::<u16>().map_err(|_| bad())?;
            addr.to_string()
        }
        _ => return Err(bad()),
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(content: &str) -> Result<String, String> {
        parse_server_info(content, Path::new("server.info"))
    }

    #[test]
    fn server_info_takes_colon_or_space_forms_and_ipv6() {
        assert_eq!(parse("127.0.0.1:7373\n").unwrap(), "127.0.0.1:7373");
        assert_eq!(parse("  10.0.0.2 9000 \n").unwrap(), "10.0.0.2:9000");
        assert_eq!(parse("\n[::1]:7373").unwrap(), "[::1]:7373");
        assert_eq!(parse("::1 7373").unwrap(), "[::1]:7373");
        assert_eq!(parse("backup.example 7373").unwrap(), "backup.example:7373");
    }

    #[test]
    fn a_framing_word_may_follow_the_address() {
        assert_eq!(parse("127.0.0.1:1234 block\n").unwrap(), "127.0.0.1:1234");
        assert_eq!(parse("10.0.0.2 9000 block").unwrap(), "10.0.0.2:9000");
        assert_eq!(server_info_framing("127.0.0.1:1234 block\n"), Some(Framing::Block));
        assert_eq!(server_info_framing("127.0.0.1 1234 stream"), Some(Framing::Stream));
        assert_eq!(server_info_framing("127.0.0.1:1234"), None);
    }

    #[test]
    fn a_byte_order_mark_before_the_address_is_ignored() {
        assert_eq!(parse("\u{feff}127.0.0.1:7373\n").unwrap(), "127.0.0.1:7373");
        assert_eq!(parse("\u{feff}10.0.0.2 9000").unwrap(), "10.0.0.2:9000");
    }

    #[test]
    fn a_malformed_server_info_is_quoted_with_the_expected_form() {
        for bad in ["", "localhost", "1.2.3.4:http", "1.2.3.4 70000", "a b c"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("IP:port or IP port"), "{err}");
            assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
        }
    }
}
