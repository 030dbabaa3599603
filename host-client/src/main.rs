//! `backup-client`: back files up to a backup-server, list, restore and delete them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use backup_client::address;
use backup_client::commands::{self, Prepared, Session};
use backup_client::credentials;
use backup_client::failure::Failure;
use backup_client::finisher::Placement;
use backup_client::framing::{FramedConnector, Framing};
use backup_client::identity;
use backup_client::progress::Mode;
use backup_client::transport::TcpConnector;
use backup_core::Client;
use backup_core::secure::SECURE_VERSION;
use backup_core::wire::{DEFAULT_PORT, MIN_USER_ID};
use clap::{CommandFactory, Parser, Subcommand};
use host_common::key_line::KeyLine;

/// Transfers stream through this buffer; memory does not grow with file size.
const BUFFER_LEN: usize = 256 * 1024;

/// The end of `--help`; the default address is the core's, so it is
/// formatted when clap builds the help.
fn examples() -> String {
    format!(
        "\
Examples:
  backup-client backup notes.txt photo.jpg     back up two files under their names
  backup-client backup ~/.bashrc --as bashrc   back up under another name
  backup-client list                           one name per line
  backup-client restore notes.txt -o /tmp/     restore into a folder
  backup-client delete photo.jpg
  backup-client --server 192.0.2.7:{DEFAULT_PORT} list   talk to another server

The server is --server, else the line in ./server.info (IP:port or IP port),
else server.info next to this program, else {}.

Exit status: 0 success, 1 local problem, 2 usage, 3 no such file,
4 no files stored, 5 refused by the server, 6 connection or protocol failure.",
        address::DEFAULT_SERVER
    )
}

/// Back files up to a backup-server, list, restore and delete them.
#[derive(Debug, Parser)]
#[command(version, after_long_help = examples())]
struct Cli {
    /// Server address: HOST:PORT, IPv4 or [IPv6]:PORT.
    #[arg(long, global = true, env = "BACKUP_SERVER")]
    server: Option<String>,

    // The help names the range the core allows, so it is built at run time.
    #[arg(
        long,
        global = true,
        env = "BACKUP_USER",
        help = format!(
            "User id ({}); by default the one saved in ~/.config/backup-client/user-id, created on first use",
            identity::id_range()
        ),
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_USER_ID)..)
    )]
    user: Option<u32>,

    /// Seconds the server may keep the client waiting: to connect, and in
    /// all for each answer. Long transfers are not cut: each 64 KiB that
    /// moves starts the wait over, so what fails is a server that stalls or
    /// trickles (moves less than 64 KiB per SECS of waiting).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,

    /// How the server frames messages: `block` for servers that use
    /// 1024-byte blocks and one request per connection (the C++
    /// File-Transfer-and_Backup project's). Default: what server.info says
    /// after the address (`IP:port block`), else stream.
    #[arg(long, global = true, env = "BACKUP_FRAMING", value_enum)]
    framing: Option<Framing>,

    /// Read the key (a line `backup-key:<id>:<hex>`) from this owner-only
    /// file. Default: the environment variable BACKUP_KEY, else the key
    /// saved by `login`. With a key every command uses authenticated,
    /// encrypted sessions (protocol version 3), never plaintext.
    #[arg(long, global = true, value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// Talk plaintext (protocol version 2, then 1) even if a key is set up:
    /// for old servers. Anyone on the network path can then read and change
    /// what is sent, and the server may refuse users that have a key.
    #[arg(long, global = true)]
    plaintext: bool,

    /// Print nothing but errors and requested output.
    #[arg(long, short, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back up files, each under its base name (replacing a stored file of
    /// that name).
    #[command(
        after_long_help = "Examples:\n  backup-client backup a.txt b.txt\n  backup-client backup report-final-v3.pdf --as report.pdf"
    )]
    Backup {
        /// Files to back up.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Store the (single) file under this name.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
    },
    /// Restore files. Each is written to a temporary file and renamed when
    /// complete, so a failed restore leaves nothing half-written.
    #[command(
        after_long_help = "Examples:\n  backup-client restore a.txt\n  backup-client restore a.txt -o old-a.txt --force\n  backup-client restore a.txt b.txt -o restored/"
    )]
    Restore {
        /// Names of the stored files.
        #[arg(required = true)]
        names: Vec<String>,
        /// Where to write: a file (one NAME), or a folder to put each NAME in; default ./NAME.
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace an existing file at the destination.
        #[arg(long)]
        force: bool,
        /// UNSAFE: do not sync restored files before renaming them into
        /// place. Faster for many small files, but a crash or power cut in
        /// the next half minute can leave them empty or partial. For
        /// comparisons with tools that do not sync (rsync without --fsync).
        #[arg(long)]
        unsafe_no_fsync: bool,
    },
    /// Delete stored files.
    #[command(after_long_help = "Example:\n  backup-client delete a.txt b.txt")]
    Delete {
        /// Names of the stored files.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// List stored files, one name per line.
    #[command(after_long_help = "Example:\n  backup-client list | grep '\\.pdf$'")]
    List,
    /// The classic session: list, back up every file in backup.info, list,
    /// restore the first as ./tmp, delete it, and check that it is gone.
    #[command(after_long_help = "Example:\n  printf 'a.txt\\nb.txt\\n' > backup.info && backup-client run")]
    Run {
        /// The list of files: one path per line, '#' comments, paths relative to it.
        #[arg(long, default_value = "backup.info")]
        info: PathBuf,
        /// Replace an existing ./tmp.
        #[arg(long)]
        force: bool,
    },
    /// Print your user id (creating one on first use).
    Whoami,
    /// Save the key line `backup-server user add` printed, so every command
    /// uses authenticated sessions. Without KEYLINE it is read from the
    /// standard input, which keeps it off the command line (where other
    /// users of this machine can see it).
    #[command(after_long_help = "Example:\n  backup-client login < key.txt")]
    Login {
        /// The key line, backup-key:<user id>:<64 hex digits>.
        keyline: Option<String>,
    },
    /// Print the completion script for a shell.
    #[command(
        after_long_help = "Example:\n  backup-client completions bash > ~/.local/share/bash-completion/completions/backup-client"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for packages.
    #[command(hide = true)]
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("backup-client: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The key, unless --plaintext: --key-file, else BACKUP_KEY, else the saved one.
fn key(cli: &Cli) -> Result<Option<(KeyLine, credentials::Source)>, Failure> {
    if cli.plaintext {
        return Ok(None);
    }
    let env = std::env::var(credentials::KEY_ENV).ok();
    let saved = credentials::saved_key_path();
    credentials::load(cli.key_file.as_deref(), env, saved.as_deref()).map_err(Failure::local)
}

/// The user id: the key's, else --user, else the saved one (created on first use).
fn user_id(flag: Option<u32>, key: Option<&(KeyLine, credentials::Source)>) -> Result<u32, Failure> {
    if let Some((line, source)) = key {
        return match flag {
            Some(id) if id != line.user => Err(Failure::usage(format!(
                "--user {id} is not the user of the key ({source} is for user {}); drop --user, or pass the other user's --key-file",
                line.user
            ))),
            _ => Ok(line.user),
        };
    }
    if let Some(id) = flag {
        return Ok(id);
    }
    let path = identity::id_path().ok_or_else(|| {
        Failure::local("no HOME or XDG_CONFIG_HOME to keep your user id in; pass --user ID")
    })?;
    let (id, created) = identity::load_or_create(&path).map_err(Failure::local)?;
    if created {
        eprintln!(
            "your user id is {id}; keep it to restore from another machine (saved in {})",
            path.display()
        );
    }
    Ok(id)
}

/// `login`: checks and saves the key line.
fn login(keyline: Option<&str>) -> Result<(), Failure> {
    let line = match keyline {
        Some(text) => text.parse::<KeyLine>().map_err(|e| Failure::usage(e.to_string()))?,
        None => credentials::read_line(&mut std::io::stdin().lock()).map_err(Failure::usage)?,
    };
    let path = credentials::saved_key_path().ok_or_else(|| {
        Failure::local("no HOME or XDG_CONFIG_HOME to keep your key in; use --key-file PATH")
    })?;
    credentials::save(&path, &line).map_err(Failure::local)?;
    eprintln!(
        "saved the key of user {} in {}; commands now use authenticated sessions",
        line.user,
        path.display()
    );
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Local checks first: a missing file or a file in the way is reported
    // as such, before any configuration or network is involved.
    let prepared = match &cli.command {
        Command::Login { keyline } => return login(keyline.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "backup-client", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            return clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Failure::local(format!("cannot print the manual page: {e}")));
        }
        Command::Whoami => {
            commands::out(format_args!("{}", user_id(cli.user, key(&cli)?.as_ref())?));
            return Ok(());
        }
        Command::Backup { files, as_name } => commands::prepare_backup(files, as_name.as_deref())?,
        Command::Restore { names, output, force, unsafe_no_fsync } => {
            let how = Placement { force: *force, sync: !unsafe_no_fsync };
            commands::prepare_restore(names, output.as_deref(), how)?
        }
        Command::Delete { names } => commands::prepare_delete(names)?,
        Command::List => Prepared::List,
        Command::Run { info, force } => commands::prepare_run(info, *force)?,
    };
    let key = key(&cli)?;
    let user = user_id(cli.user, key.as_ref())?;
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::local(format!("cannot read the current folder: {e}")))?;
    let exe = std::env::current_exe().ok();
    let server = address::resolve(cli.server.as_deref(), &cwd, exe.as_deref().and_then(|e| e.parent()))
        .map_err(Failure::local)?;
    let tcp = TcpConnector { addrs: server.addrs.clone(), timeout: Duration::from_secs(cli.timeout) };
    let framing = cli.framing.or(server.framing).unwrap_or_default();
    if framing == Framing::Block && key.is_some() {
        return Err(Failure::usage(
            "block-framed servers speak only plaintext version 1, and a key is set up: pass --plaintext \
             to talk to this server without authentication (anyone on the network can then read your files)",
        ));
    }
    let secure = key.is_some();
    let connector = FramedConnector { tcp, framing, key: key.map(|(line, _)| line) };
    let mut buf = vec![0u8; BUFFER_LEN];
    let mut client =
        Client::new(connector, user, &mut buf).map_err(|_| Failure::local("buffer too small"))?;
    if secure {
        client = client.with_version(SECURE_VERSION);
    }
    let mut session = Session {
        client,
        server: server.text,
        user,
        timeout_secs: cli.timeout,
        mode: Mode::detect(cli.quiet),
    };
    commands::execute(&mut session, prepared)
}
