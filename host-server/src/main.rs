//! `backup-server`: serves backups over TCP into a folder.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use backup_core::wire::{MAX_FILE_SIZE, MIN_USER_ID};
use backup_server::config_file::{self, DEFAULT_CONFIG};
use backup_server::log_format::{self, LogFormat};
use backup_server::plaintext::Plaintext;
use backup_server::proxy_header::TrustedProxies;
use backup_server::users::Registry;
use backup_server::{
    DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS_PER_IP, DEFAULT_MIN_RATE, DEFAULT_ROOT, FsStorage, Server,
    ServerConfig, StoreOptions,
};
use bytesize::ByteSize;
use clap::{CommandFactory, Parser, Subcommand};
use host_common::key_line::Key;

/// Backup server: stores each user's files under ROOT/<user id>/<name>.
///
/// Every backup is written to a temporary file, synced to disk and renamed
/// into place before it is acknowledged, so an acknowledged backup survives a
/// crash and an interrupted one leaves the previous version intact.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  backup-server\n  backup-server --listen '[::]:7373' --root /srv/backup --quota 10GiB\n  backup-server --root /srv/backup user add\n  backup-server --config /etc/backup-server/config.toml",
    // A flag given again replaces the earlier one: how the command line
    // beats the configuration file's arguments, which come first.
    args_override_self = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Configuration file: every flag below, by its long name, in TOML
    /// (`max-connections = 256`). Flags beat environment variables, which
    /// beat the file, which beats the defaults. Default: /etc/backup-server/config.toml
    /// if it exists.
    #[arg(long, global = true, env = "BACKUP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address and port to listen on (IPv4 or [IPv6]).
    #[arg(long, env = "BACKUP_LISTEN", default_value_t = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Also listen here for clients using 1024-byte block framing (the
    /// C++/Python File-Transfer-and_Backup project's): one request per
    /// connection, served from the same store. Off unless given.
    #[arg(long, env = "BACKUP_LISTEN_BLOCK", value_name = "ADDR:PORT")]
    listen_block: Option<SocketAddr>,

    /// Folder to store files in; created (owner-only) if missing.
    #[arg(long, global = true, env = "BACKUP_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,

    /// Connections served at once, each on its own thread; further clients
    /// wait until one ends. The server runs at most this many threads plus
    /// 8 for disk syncs and 3 fixed ones (accept loop, signals, closing
    /// refused connections): 1035 by default. If the system refuses a
    /// thread (ulimit -u, TasksMax, pids.max), that one connection is
    /// refused with a 1003 and the server goes on.
    #[arg(long, env = "BACKUP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Connections served at once from one client address (an IPv6 /64
    /// counts as one address); more are refused at once with a 1003. The
    /// default lets 256 machines behind one NAT back up together.
    #[arg(long, env = "BACKUP_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_ip: u32,

    /// Slowest transfer served, in bytes per second (or with a unit: 64KiB).
    /// Within a request, the time spent waiting on the client may not
    /// exceed the idle timeout plus the bytes moved divided by this rate;
    /// a slower client is disconnected. Time the server spends on its own
    /// disk does not count. 0 turns this off. The default, 512, cuts
    /// byte-by-byte trickles and keeps the slowest serial links.
    #[arg(long, env = "BACKUP_MIN_RATE", default_value_t = DEFAULT_MIN_RATE, value_parser = parse_size)]
    min_rate: u64,

    /// Largest file accepted, in bytes or with a unit (64MiB, 2GB).
    /// Larger uploads are refused before their data is sent.
    #[arg(long, env = "BACKUP_MAX_FILE_SIZE", default_value_t = MAX_FILE_SIZE, value_parser = parse_file_size)]
    max_file_size: u32,

    /// Bytes each user may store in all (e.g. 10GiB); unlimited if unset.
    #[arg(long, env = "BACKUP_QUOTA", value_parser = parse_size)]
    quota: Option<u64>,

    /// Seconds a connection may stay silent (or leave our data unread)
    /// before it is closed: between bytes received, and between each 16 KiB
    /// the client takes of what we send. Also the grace of --min-rate.
    #[arg(long, env = "BACKUP_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,

    /// On Ctrl-C or SIGTERM, seconds that transfers in flight get to finish
    /// before they are aborted.
    #[arg(long, env = "BACKUP_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,

    /// Who may use the unauthenticated protocol versions 1 and 2: `allow`
    /// (everyone: only on networks secured otherwise), `loopback` (this
    /// machine only) or `deny`. Users with a key (`user add`) are never
    /// served in plaintext, whatever this says.
    #[arg(long, env = "BACKUP_PLAINTEXT", value_enum, default_value_t = Plaintext::Loopback)]
    plaintext: Plaintext,

    /// Serve Prometheus metrics (GET /metrics) on this address: requests by
    /// operation and status, bytes, durations, connections, refusals,
    /// failed handshakes, group-commit sizes. Off unless given; it shows
    /// request counts to whoever can reach it, so keep it on loopback or a
    /// private network.
    #[arg(long, env = "BACKUP_METRICS", value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,

    /// Behind a balancer: connections from the --trusted-proxy addresses
    /// must start with a PROXY protocol v2 header (HAProxy's
    /// `send-proxy-v2`), whose client address is then used for the
    /// plaintext policy, the per-address limits and the logs. A header from
    /// any other address is refused. (`--proxy-protocol=false` turns off
    /// what a configuration file turned on.)
    #[arg(long, env = "BACKUP_PROXY_PROTOCOL", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value_t = false, default_missing_value = "true",
          requires_if("true", "trusted_proxy"))]
    proxy_protocol: bool,

    /// The balancers' addresses or networks (127.0.0.1, 10.0.0.0/8, ...),
    /// comma-separated, for --proxy-protocol.
    #[arg(long, env = "BACKUP_TRUSTED_PROXY", value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxy: Vec<ipnet::IpNet>,

    /// Log level: error, warn, info (one line per request), debug or trace.
    #[arg(long, env = "BACKUP_LOG_LEVEL", default_value = "info")]
    log_level: log::LevelFilter,

    /// Log lines as text, or as one JSON object each (a request's with the
    /// fields of its text line: peer, user, op, name, status, bytes, time,
    /// reason).
    #[arg(long, env = "BACKUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// UNSAFE: acknowledge backups without syncing them to disk. A power
    /// failure can then lose acknowledged backups. Only for benchmarks
    /// against peers that do not sync either. (`--unsafe-no-fsync=false`
    /// turns off what a configuration file turned on.)
    #[arg(long, env = "BACKUP_UNSAFE_NO_FSYNC", action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_value_t = false, default_missing_value = "true")]
    unsafe_no_fsync: bool,
}

/// What the server does instead of serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the users that have a key (protocol version 3), in the
    /// storage root's registry. Running servers see changes at once.
    #[command(subcommand)]
    User(UserCommand),
    /// Print a configuration file that sets nothing: every key, commented
    /// out, with its help and default.
    ConfigTemplate,
    /// Print the completion script for a shell.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for packages.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Register a user and print its key line, backup-key:<id>:<key>, the
    /// one line `backup-client login` takes. Hand it over privately: it is
    /// the user's only credential.
    Add {
        /// The user id: an existing user's id gives that user's files a key
        /// (from then on served only in authenticated sessions). Default: a
        /// new random id.
        #[arg(long, value_parser = clap::value_parser!(u32).range(i64::from(MIN_USER_ID)..))]
        id: Option<u32>,
        /// The key, 64 hex digits, for devices provisioned at the factory.
        /// Default: a new random key. Prefer the default: a key on a command
        /// line can be read by other users of this machine.
        // A String, parsed in `user_command`: clap's own error would quote
        // the value, and a secret never goes into an error message.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
    /// Print the ids of the users that have a key, one per line, and of
    /// removed users as `<id> removed`.
    List,
    /// Remove a user's key. Its files stay, served to nobody (not even in
    /// plaintext) until `user add --id` gives the user a new key; sessions
    /// opened with the removed key are refused from their next request.
    Remove {
        /// The user id.
        id: u32,
    },
    /// Give a user a new random key and print its key line. Sessions opened
    /// with the old key are refused from their next request.
    Rotate {
        /// The user id.
        id: u32,
    },
}

/// Runs `backup-server user ...`.
fn user_command(root: &std::path::Path, command: UserCommand) -> ExitCode {
    if let UserCommand::Add { key: Some(text), .. } = &command {
        if Key::from_hex(text.trim()).is_err() {
            eprintln!(
                "backup-server: --key must be 64 hex digits (32 bytes); leave it out for a new random key"
            );
            return ExitCode::from(2);
        }
    }
    let result = Registry::edit(root).and_then(|mut registry| match command {
        UserCommand::Add { id, key } => {
            let key = key.and_then(|text| Key::from_hex(text.trim()).ok());
            registry.add(id, key).map(|line| say(&line.expose()))
        }
        UserCommand::List => {
            registry.users().for_each(|(id, keyed)| match keyed {
                true => say(&id.to_string()),
                false => say(&format!("{id} removed")),
            });
            Ok(())
        }
        UserCommand::Remove { id } => registry.remove(id),
        UserCommand::Rotate { id } => registry.rotate(id).map(|line| say(&line.expose())),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backup-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A network in CIDR notation, or one address.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network (try 127.0.0.1 or 10.0.0.0/8)"))
}

fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| format!("{e} (try e.g. 1048576, 64MiB or 2GB)"))
}

fn parse_file_size(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    u32::try_from(size)
        .map_err(|_| format!("{size} is over the protocol's limit of {MAX_FILE_SIZE} bytes (4 GiB - 1)"))
}

/// Every connection is a file descriptor, and many systems start processes
/// with a soft limit of 1024: raise it to the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, ..limit };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            log::warn!("cannot raise the open file limit: {e}");
        }
    }
}

/// A line on stdout. A closed stdout (`backup-server | head -1`) must not
/// stop a server, so write errors are ignored, unlike `println!`'s panic.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The command line with the configuration file's flags in front; exits
/// with clap's message on a bad flag and with ours on a bad file.
fn parse_args() -> Result<Args, String> {
    let raw: Vec<OsString> = std::env::args_os().collect();
    let first = Args::parse_from(&raw);
    let path = match first.config.clone() {
        Some(path) => path,
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(first),
    };
    let from_file = config_file::read(&Args::command(), &path, |name| std::env::var_os(name).is_some())
        .map_err(|e| e.to_string())?;
    let mut argv = raw.into_iter();
    let all: Vec<OsString> = argv.next().into_iter().chain(from_file).chain(argv).collect();
    Ok(Args::parse_from(all))
}

fn main() -> ExitCode {
    let mut args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("backup-server: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command.take() {
        Some(Command::User(command)) => return user_command(&args.root, command),
        Some(Command::ConfigTemplate) => {
            print!("{}", config_file::template(&Args::command()));
            return ExitCode::SUCCESS;
        }
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Args::command(), "backup-server", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Man) => {
            return match clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("backup-server: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    log_format::init(args.log_level, args.log_format);
    let config = ServerConfig {
        max_connections: args.max_connections as usize,
        max_connections_per_ip: args.max_connections_per_ip as usize,
        min_rate: args.min_rate,
        max_file_size: args.max_file_size,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        listen_block: args.listen_block,
        plaintext: args.plaintext,
        metrics: args.metrics,
        log_format: args.log_format,
        trusted_proxies: args.proxy_protocol.then(|| TrustedProxies::new(args.trusted_proxy.clone())),
        ..ServerConfig::new(args.listen)
    };
    let storage = StoreOptions { quota: args.quota, durable: !args.unsafe_no_fsync };
    raise_fd_limit();
    let server = match FsStorage::open(&args.root, storage).and_then(|store| Server::bind(config, store)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("backup-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = server.shutdown_handle();
    if let Err(e) = ctrlc::set_handler(move || handle.shutdown()) {
        eprintln!("backup-server: cannot handle Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    let addr = server.local_addr().map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    say(&format!("backup-server listening on {addr}, storing in {}", server.root().display()));
    if let Some(metrics) = server.metrics_addr() {
        say(&format!("backup-server serving metrics on http://{metrics}/metrics"));
    }
    if let Some(block) = server.block_addr() {
        say(&format!("backup-server listening for block-framed clients on {block}"));
    }
    if args.unsafe_no_fsync {
        say("WARNING: --unsafe-no-fsync: acknowledged backups may be lost on power failure");
    }
    // Under systemd (Type=notify): ready now that the listeners are bound.
    // Without NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        log::warn!("cannot tell systemd the server is ready: {e}");
    }
    let served = server.run();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    match served {
        Ok(()) => {
            say("backup-server stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backup-server: {e}");
            ExitCode::FAILURE
        }
    }
}
