//! Running the server for real: the configuration file and its
//! precedence, metrics, JSON logs, completions and the manual page, all
//! through the binary as an operator meets it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{BACKUP, LIST, PlainClient, RESTORE, read_reply, request};

fn server_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backup-server"));
    for var in ["BACKUP_LISTEN", "BACKUP_ROOT", "BACKUP_CONFIG", "BACKUP_METRICS", "BACKUP_LOG_FORMAT"] {
        command.env_remove(var);
    }
    command
}

/// A running server and the lines it printed on stdout at start.
struct Running {
    child: Child,
    lines: Vec<String>,
}

impl Running {
    /// Starts the server with `args` and reads its start-up lines (up to
    /// the `expect`th).
    fn start(command: &mut Command, expect: usize) -> Running {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..expect {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            lines.push(line.trim_end().to_string());
        }
        Running { child, lines }
    }

    fn addr(&self) -> SocketAddr {
        self.lines[0].split_whitespace().nth(3).unwrap().trim_end_matches(',').parse().unwrap()
    }

    fn stop(mut self) -> Output {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let status = self.child.wait().unwrap();
        let mut stderr = Vec::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_end(&mut stderr).unwrap();
        }
        Output { status, stdout: Vec::new(), stderr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a server started with `config`, `env` and `flags` stores.
fn root_chosen(dir: &Path, config: Option<&str>, env: Option<&str>, flag: Option<&str>) -> String {
    let mut command = server_command();
    command.current_dir(dir).args(["--listen", "127.0.0.1:0"]);
    if let Some(text) = config {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        command.args(["--config", "config.toml"]);
    }
    if let Some(root) = env {
        command.env("BACKUP_ROOT", root);
    }
    if let Some(root) = flag {
        command.args(["--root", root]);
    }
    let running = Running::start(&mut command, 1);
    let line = running.lines[0].clone();
    let stored = line.split("storing in ").nth(1).unwrap_or_default();
    Path::new(stored).file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_flag_beats_its_environment_variable_which_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = Some("root = \"from-file\"\n");
    assert_eq!(root_chosen(dir.path(), None, None, None), "backupsvr", "the default");
    assert_eq!(root_chosen(dir.path(), file, None, None), "from-file");
    assert_eq!(root_chosen(dir.path(), file, Some("from-env"), None), "from-env");
    assert_eq!(root_chosen(dir.path(), file, Some("from-env"), Some("from-flag")), "from-flag");
    assert_eq!(root_chosen(dir.path(), file, None, Some("from-flag")), "from-flag");
}

fn bad_config(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let out = server_command().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&path.display().to_string()), "names the file: {err}");
    err
}

#[test]
fn an_unknown_key_or_a_bad_value_is_an_error_naming_the_file_the_line_and_the_key() {
    let err = bad_config("# settings\nidle-timeout = 30\nmax-conections = 10\n");
    assert!(err.contains("line 3: unknown key `max-conections`"), "{err}");
    let err = bad_config("plaintext = \"sometimes\"\n");
    assert!(err.contains("line 1: key `plaintext`: invalid value 'sometimes'"), "{err}");
    let err = bad_config("\nmax-file-size = \"5TiB\"\n");
    assert!(err.contains("line 2: key `max-file-size`") && err.contains("4 GiB"), "{err}");
    let err = bad_config("unsafe-no-fsync = 1\n");
    assert!(err.contains("key `unsafe-no-fsync`: invalid value '1'"), "{err}");
    let missing = server_command().args(["--config", "/nonexistent/config.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("cannot read the configuration file /nonexistent")
    );
}

#[test]
fn the_config_template_is_a_file_that_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = server_command().args(["--config", "/dev/null", "config-template"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in
        ["#listen = \"127.0.0.1:", "#max-connections = 1024", "#plaintext = \"loopback\"", "#metrics = "]
    {
        assert!(text.contains(key), "{key} in\n{text}");
    }
    std::fs::write(dir.path().join("config.toml"), &text).unwrap();
    assert_eq!(root_chosen(dir.path(), Some(&text), None, None), "backupsvr");
}

/// `GET /metrics`, as Prometheus asks.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `name` (with its labels), 0 if absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn metrics_move_by_exactly_what_was_done_and_a_stuck_scraper_delays_nothing() {
    let root = tempfile::tempdir().unwrap();
    let running = Running::start(
        server_command()
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-level", "warn", "--root"])
            .arg(root.path()),
        2,
    );
    let metrics: SocketAddr =
        running.lines[1].split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap();
    let addr = running.addr();
    let before = scrape(metrics);

    // A scraper that sends half a request and never reads, and a hundred
    // more connections behind it: they cost no thread of the server's.
    let threads = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", running.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse::<u32>().unwrap()
    };
    let before_flood = threads();
    let mut stuck = TcpStream::connect(metrics).unwrap();
    stuck.write_all(b"GET /metr").unwrap();
    let flood: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(metrics).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(threads(), before_flood, "scrapers are answered by one thread, one at a time");

    let mut plain = PlainClient { stream: TcpStream::connect(addr).unwrap(), user: 31 };
    plain.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for (name, len) in [(&b"a"[..], 1000usize), (b"b", 2000), (b"c", 0)] {
        assert_eq!(plain.call(BACKUP, name, Some(&vec![7u8; len])).status, 212, "not delayed by the scraper");
    }
    assert_eq!(plain.call(RESTORE, b"b", None).payload.len(), 2000);
    assert_eq!(plain.call(LIST, b"", None).status, 211);
    drop(plain);
    // A 1003 ends the session: on a connection of its own.
    let mut missing = TcpStream::connect(addr).unwrap();
    missing.write_all(&request(31, RESTORE, b"none", None)).unwrap();
    assert_eq!(read_reply(&mut missing).unwrap().status, 1001);
    drop(missing);

    // Hung up, the waiting scrapers are passed over at once.
    drop((stuck, flood));
    let after = scrape(metrics);
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("backup_requests_total{op=\"backup\",status=\"212\"}"), 3.0);
    assert_eq!(moved("backup_requests_total{op=\"restore\",status=\"210\"}"), 1.0);
    assert_eq!(moved("backup_requests_total{op=\"restore\",status=\"1001\"}"), 1.0);
    assert_eq!(moved("backup_requests_total{op=\"list\",status=\"211\"}"), 1.0);
    assert_eq!(moved("backup_received_bytes_total"), 3000.0);
    assert_eq!(moved("backup_sent_bytes_total"), 2000.0 + "a\nb\nc\n".len() as f64);
    assert_eq!(moved("backup_request_duration_seconds_count{op=\"backup\"}"), 3.0);
    assert!(moved("backup_group_commit_batch_size_sum") >= 1.0, "the backups were committed");
    assert_eq!(sample(&after, "backup_connections_open"), 0.0);
    running.stop();
}

#[test]
fn json_logs_carry_one_object_per_request_with_the_text_lines_fields() {
    let root = tempfile::tempdir().unwrap();
    let running = Running::start(
        server_command()
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--root"])
            .arg(root.path())
            .stderr(Stdio::piped()),
        1,
    );
    let mut plain = PlainClient { stream: TcpStream::connect(running.addr()).unwrap(), user: 32 };
    assert_eq!(plain.call(BACKUP, b"notes \"1\".txt", Some(b"hello")).status, 212);
    drop(plain);
    std::thread::sleep(Duration::from_millis(200));
    let out = running.stop();
    let text = String::from_utf8(out.stderr).unwrap();
    let objects: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let request = objects.iter().find(|o| o["op"] == "backup").expect("a request line");
    assert_eq!(request["user"], 32);
    assert_eq!(request["name"], "notes \"1\".txt");
    assert_eq!(request["status"], 212);
    assert_eq!(request["bytes"], 5);
    assert!(request["time"].is_f64() && request["peer"].is_string() && request["level"] == "INFO");
    assert!(request["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{request}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_binary() {
    let exe = env!("CARGO_BIN_EXE_backup-server");
    for shell in ["bash", "zsh", "fish"] {
        let out =
            Command::new(exe).args(["completions", shell]).env_remove("BACKUP_CONFIG").output().unwrap();
        assert!(out.status.success(), "completions {shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("backup-server"), "completions {shell}");
    }
    let man = Command::new(exe).arg("man").output().unwrap();
    assert!(man.status.success());
    let roff = String::from_utf8_lossy(&man.stdout).into_owned();
    assert!(roff.contains(".TH backup-server") && roff.contains("\\-\\-config"), "{roff}");
}

#[test]
fn a_registry_that_cannot_be_read_stops_the_server_before_it_serves() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join(".backup-users"), "backup-key:5000:zz\n").unwrap();
    let out = server_command().args(["--listen", "127.0.0.1:0", "--root"]).arg(root.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".backup-users line 1") && err.contains("before starting"), "{err}");
}

#[test]
fn a_switch_the_file_turns_on_the_command_line_turns_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "unsafe-no-fsync = true\n").unwrap();
    let stdout_of = |extra: &[&str]| {
        let child = server_command()
            .current_dir(dir.path())
            .args(["--config", "config.toml", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    assert!(stdout_of(&[]).contains("WARNING: --unsafe-no-fsync"), "the file turns it on");
    let off = stdout_of(&["--unsafe-no-fsync=false"]);
    assert!(off.contains("listening") && !off.contains("WARNING"), "the flag turns it off: {off}");
}
