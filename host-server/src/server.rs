//! The TCP server: an accept loop, a bounded pool of worker threads each
//! serving one connection with the core's dispatcher, and a graceful shutdown.
//!
//! Threads: one per connection served (at most `max_connections`, reused),
//! the accept loop, the thread that closes refused connections
//! ([`crate::linger`]), the signal handler's thread in the binary, and the
//! storage's sync threads ([`crate::fs_store`]). A connection the system
//! will not start a thread for is refused with a 1003; the server goes on.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use backup_core::access::{
    Guarded, REASON_PLAINTEXT_REFUSED, REASON_TOO_MANY_FAILURES, REASON_TOO_MANY_HANDSHAKES, SessionAccess,
};
use backup_core::block::{BlockEnd, BlockError, BlockServerConn};
use backup_core::dispatch::{Observer, Outcome};
use backup_core::io::drain;
use backup_core::secure::{
    HELLO_LEN, HandshakeError, Hello, SECURE_VERSION, SecureError, TAG_LEN, rx_buffer_len, server_handshake,
    tx_buffer_len,
};
use backup_core::wire::{
    LEGACY_VERSION, MAX_FILE_SIZE, MAX_REASON_LEN, PROTOCOL_VERSION, REQUEST_PREFIX_LEN,
    RESPONSE_MAX_HEADER_LEN, RESPONSE_MIN_HEADER_LEN, RequestView, Response,
};
use backup_core::{Config, Dispatcher, SessionEnd, TransportError};
use rand_core::OsRng;
use rustix::event::{PollFd, PollFlags};

use crate::auth_limit::{AuthLimit, Refused};
use crate::backend::Backend;
use crate::conn::Conn;
use crate::fs_store::FsStorage;
use crate::ip_key::IpKey;
use crate::linger::Linger;
use crate::log_format::{LogFormat, REQUEST_TARGET, RequestLine};
use crate::metrics::Metrics;
use crate::plaintext::Plaintext;
use crate::proxy_header::{self, Origin, TrustedProxies};
use crate::users::Users;

/// Buffer each connection streams payloads through. Memory per connection is
/// this plus the read buffer, whatever the file size.
const DISPATCH_BUF_LEN: usize = 128 * 1024;
/// The 1003 reason for a PROXY header from an address not trusted to send one.
const REASON_UNTRUSTED_PROXY: &str =
    "PROXY protocol header from an address not in the server's --trusted-proxy";
/// The 1003 reason for a trusted balancer's connection without a valid header.
const REASON_BAD_PROXY_HEADER: &str = "no valid PROXY protocol v2 header from a trusted balancer";
/// Holds any 1003 (its header and a reason of the longest length), sent to
/// a peer refused before its session; also the drain's scratch then.
const REFUSAL_LEN: usize = RESPONSE_MIN_HEADER_LEN + MAX_REASON_LEN;
/// After a session ends early, what the server reads and discards so the
/// client can still read our last response: at most this many bytes...
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// ...for at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Largest record a version-3 client may send us: 16 KiB of plaintext, as
/// TLS chose. Each connection holds one such buffer each way beside the
/// dispatch buffer (32 KiB, against 128 KiB for the protocol's largest).
const RECORD_LEN: u16 = 16 * 1024 + TAG_LEN as u16;
/// Stack for worker threads: the dispatcher keeps its buffers on the heap.
const WORKER_STACK: usize = 256 * 1024;

/// Default for [`ServerConfig::max_connections_per_ip`]: a quarter of the
/// default 1024 connections, so at least four addresses are needed to fill
/// the server, while an office of 256 machines behind one NAT address can
/// all back up at the same moment.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// Default for [`ServerConfig::min_rate`], in bytes per second: Apache's
/// `mod_reqtimeout` figure (500). It cuts trickles (a byte every few
/// seconds) after the grace, and stays under the slowest peer this project
/// serves, the firmware client behind a serial network module (9600 baud:
/// 960 B/s). A higher floor would cost an attacker holding connections
/// only proportionally more bandwidth, but would cut real slow links;
/// servers with only fast clients can raise it.
pub const DEFAULT_MIN_RATE: u64 = 512;

/// What the server does, set from the command line: the network and the
/// sessions. What storage does (root, quota, syncing) is the store's own
/// ([`StoreOptions`](crate::StoreOptions) for the filesystem).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second address whose connections use the 1024-byte block framing
    /// ([`backup_core::block`]): one request per connection. Off if `None`.
    pub listen_block: Option<SocketAddr>,
    /// Connections served at once, each on its own thread; more wait in the
    /// accept backlog. The server's threads are at most this many plus 11:
    /// the storage's 8 sync threads, the accept loop, the thread closing
    /// refused connections, and the binary's signal handler.
    pub max_connections: usize,
    /// Connections served at once from one address (an IPv6 /64 counts as
    /// one); more are refused with a 1003.
    pub max_connections_per_ip: usize,
    /// Within a request, the time spent waiting on the peer may not exceed
    /// the idle timeout plus the bytes moved divided by this (bytes per
    /// second); 0 turns the limit off.
    pub min_rate: u64,
    /// Largest file accepted.
    pub max_file_size: u32,
    /// How long a connection may be silent (or not take our bytes).
    pub idle_timeout: Duration,
    /// On shutdown, how long transfers in flight may take to finish.
    pub shutdown_grace: Duration,
    /// Which peers may use the unauthenticated versions 1 and 2.
    pub plaintext: Plaintext,
    /// Where to serve `GET /metrics` (Prometheus); off if `None`.
    pub metrics: Option<SocketAddr>,
    /// How per-request log lines are written.
    pub log_format: LogFormat,
    /// With the PROXY protocol on: the balancers whose connections start
    /// with a PROXY v2 header naming the client. `None`: off.
    pub trusted_proxies: Option<TrustedProxies>,
}

impl ServerConfig {
    /// Defaults for everything but the address.
    pub fn new(listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            listen_block: None,
            max_connections: 1024,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            min_rate: DEFAULT_MIN_RATE,
            max_file_size: MAX_FILE_SIZE,
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            plaintext: Plaintext::default(),
            metrics: None,
            log_format: LogFormat::Text,
            trusted_proxies: None,
        }
    }
}

/// A connection being served, as the shutdown sees it.
struct Entry {
    stream: TcpStream,
    busy: Arc<AtomicBool>,
}

/// State shared by the accept loop, the workers and shutdown handles.
struct Shared {
    stopping: AtomicBool,
    wake: SocketAddr,
    conns: Mutex<HashMap<u64, Entry>>,
    active: Mutex<usize>,
    changed: Condvar,
    next_id: AtomicU64,
    /// Connections served per address (see [`IpKey`]).
    per_ip: Mutex<HashMap<IpKey, usize>>,
    /// Who has a key.
    users: Users,
    /// Failed handshakes per address.
    auth_limit: AuthLimit,
    /// What is counted for `--metrics`.
    metrics: Metrics,
}

impl Shared {
    fn active(&self) -> MutexGuard<'_, usize> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release_slot(&self) {
        *self.active() -= 1;
        self.changed.notify_all();
    }

    /// Counts a connection from `ip`, unless `limit` are already served.
    fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<IpTicket> {
        let key = IpKey::of(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(key).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(IpTicket { shared: self.clone(), key })
    }
}

/// One connection counted against its address; uncounted when dropped.
struct IpTicket {
    shared: Arc<Shared>,
    key: IpKey,
}

impl Drop for IpTicket {
    fn drop(&mut self) {
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.key);
            }
        }
    }
}

/// Stops a running server from another thread or a signal handler.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting, lets transfers in flight finish for the grace time,
    /// aborts the rest, and makes [`Server::run`] return.
    pub fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wake the accept loop, which is blocked in accept().
        let _ = TcpStream::connect_timeout(&self.shared.wake, Duration::from_secs(1));
    }
}

/// A bound server, ready to run, storing into `B`.
pub struct Server<B: Backend = FsStorage> {
    listener: TcpListener,
    block_listener: Option<TcpListener>,
    store: B,
    config: ServerConfig,
    shared: Arc<Shared>,
    /// Started by `bind`, so that a bound server has every thread it needs
    /// before it says it is listening (and a test counting its threads
    /// counts this one too).
    linger: Linger,
    metrics_addr: Option<SocketAddr>,
}

impl Server<FsStorage> {
    /// The storage root, absolute.
    pub fn root(&self) -> &Path {
        self.store.root()
    }
}

impl<B: Backend> Server<B> {
    /// Binds the listening socket for a server storing into `store` (for
    /// the filesystem, [`FsStorage::open`], which also removes what a crash
    /// left), and starts the thread that closes refused connections.
    pub fn bind(config: ServerConfig, store: B) -> io::Result<Server<B>> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen)))?;
        let block_listener = match config.listen_block {
            None => None,
            Some(addr) => {
                let block = TcpListener::bind(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
                // Both listeners are polled; an accept raced away must not block.
                block.set_nonblocking(true)?;
                listener.set_nonblocking(true)?;
                Some(block)
            }
        };
        let users = store.registry();
        users.check()?;
        let mut wake = listener.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            wake,
            conns: Mutex::new(HashMap::new()),
            active: Mutex::new(0),
            changed: Condvar::new(),
            next_id: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
            users,
            auth_limit: AuthLimit::new(),
            metrics: Metrics::new(),
        });
        store.report_to(shared.metrics.clone());
        let metrics_addr = match config.metrics {
            None => None,
            Some(addr) => Some(
                shared
                    .metrics
                    .serve(addr)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}")))?,
            ),
        };
        let linger = Linger::start()?;
        Ok(Server { listener, block_listener, store, config, shared, linger, metrics_addr })
    }

    /// Where `GET /metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address actually bound (with the real port when asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The block-framing listener's address, if there is one.
    pub fn block_addr(&self) -> Option<SocketAddr> {
        self.block_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The next connection from either listener, and whether it is block-framed.
    fn accept(&self) -> io::Result<(TcpStream, SocketAddr, bool)> {
        let Some(block) = &self.block_listener else {
            return self.listener.accept().map(|(stream, peer)| (stream, peer, false));
        };
        loop {
            let mut fds = [PollFd::new(&self.listener, PollFlags::IN), PollFd::new(block, PollFlags::IN)];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            let ready = [fds[0].revents(), fds[1].revents()].map(|r| !r.is_empty());
            for (listener, is_block, ready) in [(&self.listener, false, ready[0]), (block, true, ready[1])] {
                if !ready {
                    continue;
                }
                match listener.accept() {
                    Ok((stream, peer)) => {
                        // Accepted sockets start blocking on Linux; say so for every system.
                        stream.set_nonblocking(false)?;
                        return Ok((stream, peer, is_block));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Where files go, for the start-up line.
    pub fn describe_store(&self) -> String {
        self.store.describe()
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { shared: self.shared.clone() }
    }

    /// Serves until shut down.
    pub fn run(self) -> io::Result<()> {
        let linger = &self.linger;
        let mut pool = Pool::new();
        let per_ip = self.config.max_connections_per_ip.max(1);
        while let Some(slot) = self.wait_for_slot() {
            let (stream, peer, block) = match self.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    drop(slot);
                    log::warn!("accept failed: {e}");
                    // Out of file descriptors, typically: do not spin.
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            // A balancer's connections are counted by the client address
            // its PROXY header names, read on the connection's own thread.
            let relayed = self.config.trusted_proxies.as_ref().is_some_and(|t| t.trusts(peer.ip()));
            let ticket = if relayed {
                None
            } else {
                let Some(ticket) = self.shared.admit(peer.ip(), per_ip) else {
                    log::warn!(
                        "{peer}: refused: already {per_ip} connections from this address \
                         (--max-connections-per-ip)"
                    );
                    self.shared.metrics.refused("too many connections from one address");
                    refuse(linger, stream, peer, &too_many_reason(per_ip));
                    continue;
                };
                Some(ticket)
            };
            if let Err(e) = pool.reserve() {
                log::warn!(
                    "{peer}: refused: the system will not start a thread for this connection ({e}); \
                     serving the others. Raise the task limit (ulimit -u, systemd TasksMax, the \
                     cgroup's pids.max) or lower --max-connections"
                );
                self.shared.metrics.refused("out of threads");
                refuse(linger, stream, peer, "the server is out of threads; try again later");
                continue;
            }
            let store = self.store.session_store();
            let config = self.config.clone();
            let shared = self.shared.clone();
            pool.run(
                Box::new(move || {
                    serve_connection(stream, peer, block, relayed, store, &config, &shared);
                    drop(ticket);
                }),
                slot,
            );
        }
        log::info!("shutting down: no new connections");
        self.finish_connections();
        drop(pool);
        Ok(())
    }

    /// Blocks until fewer than `max_connections` are served; `None` when
    /// stopping. Clients arriving meanwhile wait in the accept backlog.
    fn wait_for_slot(&self) -> Option<Slot> {
        let mut active = self.shared.active();
        while *active >= self.config.max_connections.max(1) && !self.shared.stopping.load(Ordering::SeqCst) {
            active = self.shared.changed.wait(active).unwrap_or_else(PoisonError::into_inner);
        }
        if self.shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        *active += 1;
        Some(Slot(self.shared.clone()))
    }

    /// Ends idle connections at once and busy ones after the grace time,
    /// then waits for their workers.
    fn finish_connections(&self) {
        // `None`: a grace (or idle timeout) too long for the clock to
        // represent, which is no limit, not an overflow panic.
        let deadline = Instant::now().checked_add(self.config.shutdown_grace);
        let give_up = deadline.and_then(|d| d.checked_add(self.config.idle_timeout));
        let mut active = self.shared.active();
        while *active > 0 {
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            for entry in self.shared.conns().values() {
                if expired {
                    let _ = entry.stream.shutdown(Shutdown::Both);
                } else if !entry.busy.load(Ordering::SeqCst) {
                    // Only the reading side: the session ends at its next
                    // read, but answers still owed (212s held for a group
                    // commit) go out first.
                    let _ = entry.stream.shutdown(Shutdown::Read);
                }
            }
            if give_up.is_some_and(|g| Instant::now() >= g) {
                log::warn!("{} connections did not close; exiting anyway", *active);
                return;
            }
            active = self
                .shared
                .changed
                .wait_timeout(active, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One of the `max_connections` places; freed when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release_slot();
    }
}

/// Answers a connection we will not serve, without blocking the accept loop.
fn refuse(linger: &Linger, stream: TcpStream, peer: SocketAddr, reason: &str) {
    if let Err(e) = linger.refuse(stream, reason) {
        log::debug!("{peer}: the refusal could not be sent ({e}); closed");
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads, started when none is idle and then reused. A worker
/// gives its slot back only after counting itself idle, so a new thread is
/// started only while every existing one holds a slot: never more threads
/// than `max_connections`.
struct Pool {
    tx: Option<mpsc::Sender<(Job, Slot)>>,
    rx: Arc<Mutex<mpsc::Receiver<(Job, Slot)>>>,
    idle: Arc<AtomicUsize>,
}

impl Pool {
    fn new() -> Pool {
        let (tx, rx) = mpsc::channel();
        Pool { tx: Some(tx), rx: Arc::new(Mutex::new(rx)), idle: Arc::new(AtomicUsize::new(0)) }
    }

    /// Makes sure a worker will take the next [`Pool::run`]: an idle one,
    /// else a new thread. Fails if the system refuses the thread (a task
    /// limit); the caller still holds the connection then.
    fn reserve(&mut self) -> io::Result<()> {
        if self.idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Ok(());
        }
        let rx = self.rx.clone();
        let idle = self.idle.clone();
        thread::Builder::new().name("conn".into()).stack_size(WORKER_STACK).spawn(move || {
            loop {
                let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok((job, slot)) = next else { return };
                job();
                idle.fetch_add(1, Ordering::SeqCst);
                drop(slot);
            }
        })?;
        Ok(())
    }

    /// Hands `job` to the worker [`Pool::reserve`] set aside.
    fn run(&self, job: Job, slot: Slot) {
        if let Some(tx) = &self.tx {
            // The pool holds the receiver, so sending cannot fail.
            let _ = tx.send((job, slot));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Idle workers see the channel close and exit.
        self.tx = None;
    }
}

/// Logs each request and tells the shutdown whether a transfer is in flight.
struct RequestLog {
    peer: SocketAddr,
    busy: Arc<AtomicBool>,
    metrics: Metrics,
    log_format: LogFormat,
    /// Info for clients; debug for a balancer's health checks, which would
    /// otherwise log a line per server every few seconds.
    level: log::Level,
    /// When each unfinished request started, oldest first. Requests finish
    /// in the order they started, but a group-committed backup finishes
    /// (its 212 or 1003 goes out) only after the requests behind it began.
    started: VecDeque<Instant>,
}

impl Observer for RequestLog {
    fn request_started(&mut self) {
        self.busy.store(true, Ordering::SeqCst);
        self.started.push_back(Instant::now());
    }

    fn request_finished(&mut self, o: &Outcome<'_>) {
        let started = self.started.pop_front();
        self.busy.store(!self.started.is_empty(), Ordering::SeqCst);
        let took = started.map(|t| t.elapsed()).unwrap_or_default();
        self.metrics.request(o.op.as_str(), o.status.map(|s| s.code()), o.bytes, took, o.reason);
        if log::log_enabled!(target: REQUEST_TARGET, self.level) {
            let line = RequestLine {
                peer: self.peer,
                user: o.user_id,
                op: o.op.as_str(),
                name: o.name,
                status: o.status.map(|s| s.code()),
                bytes: o.bytes,
                time: took,
                reason: o.reason,
            };
            log::log!(target: REQUEST_TARGET, self.level, "{}", line.render(self.log_format));
        }
    }
}

/// The 1003 reason for an address over `--max-connections-per-ip`.
fn too_many_reason(per_ip: usize) -> String {
    format!("too many connections from your address (the limit is {per_ip}); close one, then try again")
}

/// For a connection from a trusted balancer: reads its PROXY header and
/// counts the connection against the client it names (the balancer itself
/// for its health checks: then the flag is true). `None` when the
/// connection was refused.
fn relayed_origin(
    stream: &TcpStream,
    balancer: SocketAddr,
    config: &ServerConfig,
    shared: &Arc<Shared>,
) -> Option<(SocketAddr, IpTicket, bool)> {
    let refuse_here = |reason: &str, what: &'static str| {
        shared.metrics.refused(what);
        let mut reply = [0u8; RESPONSE_MAX_HEADER_LEN + MAX_REASON_LEN];
        let n = crate::linger::refusal(reason, &mut reply);
        let written = std::io::Write::write_all(&mut &*stream, &reply[..n]);
        let _ = written.and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    };
    let _ = stream.set_read_timeout(Some(config.idle_timeout));
    let origin = match proxy_header::read_header(&mut &*stream) {
        Ok(origin) => origin,
        Err(e) => {
            log::warn!("{balancer}: refused: {e}");
            refuse_here(REASON_BAD_PROXY_HEADER, "bad PROXY header");
            return None;
        }
    };
    let (peer, health_check) = match origin {
        Origin::Client(client) => (client, false),
        Origin::Balancer => (balancer, true),
    };
    let per_ip = config.max_connections_per_ip.max(1);
    match shared.admit(peer.ip(), per_ip) {
        Some(ticket) => Some((peer, ticket, health_check)),
        None => {
            log::warn!("{peer} (via {balancer}): refused: already {per_ip} connections from this address");
            refuse_here(&too_many_reason(per_ip), "too many connections from one address");
            None
        }
    }
}

fn serve_connection<S: backup_core::Store>(
    stream: TcpStream,
    peer: SocketAddr,
    block: bool,
    relayed: bool,
    store: S,
    config: &ServerConfig,
    shared: &Arc<Shared>,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let busy = Arc::new(AtomicBool::new(false));
    // Tracked from the start, so a shutdown also ends a balancer's
    // connection still waiting for its PROXY header.
    match stream.try_clone() {
        Ok(clone) => {
            shared.conns().insert(id, Entry { stream: clone, busy: busy.clone() });
        }
        Err(e) => {
            log::warn!("{peer}: cannot track connection: {e}");
            return;
        }
    }
    let (peer, _ticket, level) = match relayed {
        false => (peer, None, log::Level::Info),
        true => match relayed_origin(&stream, peer, config, shared) {
            Some((client, ticket, true)) => (client, Some(ticket), log::Level::Debug),
            Some((client, ticket, false)) => (client, Some(ticket), log::Level::Info),
            None => {
                shared.conns().remove(&id);
                return;
            }
        },
    };
    if !shared.stopping.load(Ordering::SeqCst) {
        let _open = shared.metrics.connection();
        let log = RequestLog {
            peer,
            busy,
            metrics: shared.metrics.clone(),
            log_format: config.log_format,
            level,
            started: VecDeque::new(),
        };
        let served = if block {
            serve_block(stream, store, config, shared, log)
        } else {
            serve(stream, store, config, shared, log)
        };
        if let Err(e) = served {
            log::warn!("{peer}: {e}");
        }
    }
    shared.conns().remove(&id);
}

fn serve<S: backup_core::Store>(
    stream: TcpStream,
    store: S,
    config: &ServerConfig,
    shared: &Shared,
    log: RequestLog,
) -> io::Result<()> {
    let peer = log.peer;
    // The first bytes are peeked (HELLO or plaintext?) before the dispatcher
    // starts a request: the first byte starts the rate clock, so a trickled
    // first request or handshake is cut by --min-rate as before.
    let mut conn = Conn::new(stream, config.idle_timeout)?
        .with_min_rate(log.busy.clone(), config.min_rate)
        .request_from_first_byte();
    // The dispatch buffer is allocated once the peer is let in: before
    // that a refusal and a drain need only this much.
    let mut scratch = [0u8; REFUSAL_LEN];
    let prefix = conn.peek(REQUEST_PREFIX_LEN)?;
    if let Ok(hello) = <&[u8; HELLO_LEN]>::try_from(prefix) {
        if let Ok(hello) = Hello::parse(hello) {
            return serve_secure(conn, hello.user_id, store, config, shared, log);
        }
    }
    if proxy_header::looks_like_header(prefix) {
        log::warn!("{peer}: refused: a PROXY protocol header from an address not in --trusted-proxy");
        shared.metrics.refused("untrusted PROXY header");
        send_refusal(&mut conn, &mut scratch, peer, LEGACY_VERSION, REASON_UNTRUSTED_PROXY);
        finish(conn, &mut scratch, peer, true);
        return Ok(());
    }
    let version = RequestView::new_unchecked(prefix).version();
    if !config.plaintext.serves(peer.ip()) && !prefix.is_empty() {
        log::info!("{peer}: plaintext session refused (--plaintext {:?})", config.plaintext);
        shared.metrics.refused("plaintext refused");
        let reply = version.clamp(LEGACY_VERSION, PROTOCOL_VERSION);
        send_refusal(&mut conn, &mut scratch, peer, reply, REASON_PLAINTEXT_REFUSED);
        finish(conn, &mut scratch, peer, true);
        return Ok(());
    }
    let mut buf = vec![0u8; DISPATCH_BUF_LEN];
    let store = Guarded::new(store, &shared.users, SessionAccess::Plaintext);
    let core_config =
        Config { max_file_size: config.max_file_size, version: PROTOCOL_VERSION, group_commit: true };
    let mut dispatcher = Dispatcher::new(store, &mut buf, core_config)
        .map_err(|_| io::Error::other("dispatch buffer too small"))?;
    let end = run(&mut dispatcher, &mut conn, log);
    drop(dispatcher);
    finish(conn, &mut buf, peer, end.should_drain());
    Ok(())
}

/// Serves a version-3 session: the handshake, keyed by the user's key in
/// the registry, then the same dispatcher over the records, for that user
/// alone. An address that failed too many handshakes is refused before any
/// handshake work.
/// `user` is the id the peeked HELLO names; the handshake reads it again.
fn serve_secure<S: backup_core::Store>(
    mut conn: Conn,
    user: u32,
    store: S,
    config: &ServerConfig,
    shared: &Shared,
    log: RequestLog,
) -> io::Result<()> {
    let peer = log.peer;
    let mut scratch = [0u8; REFUSAL_LEN];
    let attempt = match shared.auth_limit.attempt(peer.ip(), Instant::now()) {
        Ok(attempt) => attempt,
        Err(refused) => {
            let (reason, what) = match refused {
                Refused::Failures => (REASON_TOO_MANY_FAILURES, "too many failed handshakes"),
                Refused::Busy => (REASON_TOO_MANY_HANDSHAKES, "too many handshakes at once"),
            };
            log::debug!("{peer}: handshake refused: {reason}");
            shared.metrics.refused(what);
            send_refusal(&mut conn, &mut scratch, peer, SECURE_VERSION, reason);
            finish(conn, &mut scratch, peer, true);
            return Ok(());
        }
    };
    let rx = vec![0u8; rx_buffer_len(RECORD_LEN)];
    // What we send is bounded by the client's max_record too.
    let tx = vec![0u8; tx_buffer_len(RECORD_LEN as usize - TAG_LEN)];
    // The key the handshake used is kept: each request checks that it is
    // still the user's (`user remove`, `user rotate`).
    let used = std::cell::Cell::new(None);
    let lookup = |id: u32| {
        let key = shared.users.key(id)?;
        let bytes = *key.bytes();
        used.set(Some(key));
        Some(bytes)
    };
    let mut secure = match server_handshake(&mut conn, lookup, &mut OsRng, rx, tx) {
        Ok(secure) => secure,
        // Every failure counts against the address when `attempt` drops.
        Err(SecureError::Handshake(HandshakeError::AuthenticationFailed)) => {
            shared.metrics.handshake_failed();
            log::info!("{peer} user={user} op=hello status=1003 reason=\"authentication failed\"");
            finish(conn, &mut scratch, peer, true);
            return Ok(());
        }
        Err(e) => {
            shared.metrics.handshake_failed();
            log::info!("{peer}: handshake failed: {e}");
            finish(conn, &mut scratch, peer, false);
            return Ok(());
        }
    };
    attempt.succeeded();
    log::debug!("{peer}: authenticated session for user {user}");
    // The handshake was the first "request" for the rate clock; between
    // requests only the idle timeout applies, as in plaintext.
    log.busy.store(false, Ordering::SeqCst);
    let Some(key) = used.take() else {
        return Err(io::Error::other("a handshake succeeded without a key"));
    };
    let mut buf = vec![0u8; DISPATCH_BUF_LEN];
    let store = Guarded::new(store, shared.users.session(user, key), SessionAccess::Authenticated(user));
    let core_config =
        Config { max_file_size: config.max_file_size, version: SECURE_VERSION, group_commit: true };
    let mut dispatcher = Dispatcher::new(store, &mut buf, core_config)
        .map_err(|_| io::Error::other("dispatch buffer too small"))?;
    let end = run(&mut dispatcher, &mut secure, log);
    drop(dispatcher);
    // A record fault closes at once with nothing more sent; after a 1003
    // the client may still be sending, and is drained (raw bytes) first.
    let drain_it = end.should_drain() && !secure.is_failed();
    drop(secure);
    finish(conn, &mut buf, peer, drain_it);
    Ok(())
}

/// Sends a 1003 before any session: a refused plaintext peer, or an address
/// refused handshakes.
fn send_refusal(conn: &mut Conn, buf: &mut [u8], peer: SocketAddr, version: u8, reason: &str) {
    // `REFUSAL_LEN` holds any header with a 255-byte reason.
    let n = Response::emit_error(version, reason, buf).unwrap_or(0);
    if let Err(e) = embedded_io::Write::write_all(conn, &buf[..n]) {
        log::debug!("{peer}: the refusal could not be sent: {e}");
    }
}

/// A transport error that is the connection's own timeout (logged as a
/// disconnection, not a failure).
trait TimedOut {
    fn timed_out(&self) -> bool;
}

impl TimedOut for io::Error {
    fn timed_out(&self) -> bool {
        self.kind() == io::ErrorKind::TimedOut
    }
}

impl TimedOut for SecureError<io::Error> {
    fn timed_out(&self) -> bool {
        matches!(self, SecureError::Io(e) if e.timed_out())
    }
}

/// Serves a session's requests and logs how it ended.
fn run<S, C>(dispatcher: &mut Dispatcher<'_, S>, conn: &mut C, mut log: RequestLog) -> SessionEnd<C::Error>
where
    S: backup_core::Store,
    C: embedded_io::Read + embedded_io::ReadReady + backup_core::SendFile,
    C::Error: TimedOut + std::fmt::Display,
{
    let peer = log.peer;
    let end = dispatcher.serve(conn, &mut log);
    match &end {
        SessionEnd::Transport(TransportError::Io(e)) if e.timed_out() => {
            log::info!("{peer}: disconnected: {e}");
        }
        SessionEnd::Transport(TransportError::Io(e)) => log::debug!("{peer}: connection ended: {e}"),
        SessionEnd::Transport(e) => log::debug!("{peer}: connection ended: {e:?}"),
        SessionEnd::Aborted(e) => log::warn!("{peer}: restore aborted: {e}"),
        SessionEnd::Internal => log::error!("{peer}: dispatcher invariant broken; connection closed"),
        other => log::debug!("{peer}: session ended: {other:?}"),
    }
    end
}

/// Closes a served connection: after a last response that the client may
/// still be sending into, drained first, so closing does not reset the
/// connection before the client reads the response.
fn finish(mut conn: Conn, buf: &mut [u8], peer: SocketAddr, should_drain: bool) {
    if should_drain {
        conn.shutdown_write();
        conn.set_deadline(Instant::now() + DRAIN_TIME);
        let drained = drain(&mut conn, buf, DRAIN_LIMIT);
        log::debug!("{peer}: drained: {drained:?}");
    } else if conn.send_timed_out() {
        conn.reset();
    }
}

/// Serves one block-framed connection: one request, its response, close.
/// The same store, limits and timeouts as [`serve`]; the block framing is
/// translated by the core's [`BlockServerConn`].
fn serve_block<S: backup_core::Store>(
    stream: TcpStream,
    store: S,
    config: &ServerConfig,
    shared: &Shared,
    mut log: RequestLog,
) -> io::Result<()> {
    let peer = log.peer;
    let conn = Conn::new(stream, config.idle_timeout)?
        .with_min_rate(log.busy.clone(), config.min_rate)
        .request_from_first_byte();
    let mut conn = BlockServerConn::new(conn);
    let mut buf = vec![0u8; DISPATCH_BUF_LEN];
    // Block framing is version 1: plaintext.
    if !config.plaintext.serves(peer.ip()) {
        log::info!("{peer}: plaintext block session refused (--plaintext {:?})", config.plaintext);
        shared.metrics.refused("plaintext refused");
        if let Err(e) = conn.refuse(REASON_PLAINTEXT_REFUSED) {
            log::debug!("{peer}: the refusal could not be sent: {e}");
        }
        finish(conn.into_inner(), &mut buf, peer, true);
        return Ok(());
    }
    let store = Guarded::new(store, &shared.users, SessionAccess::Plaintext);
    // Version 1: these clients expect the connection to close after the
    // answer. No group commit: there is never a next request to wait for.
    let core_config =
        Config { max_file_size: config.max_file_size, version: LEGACY_VERSION, group_commit: false };
    let mut dispatcher = Dispatcher::new(store, &mut buf, core_config)
        .map_err(|_| io::Error::other("dispatch buffer too small"))?;
    let end = dispatcher.serve(&mut conn, &mut log);
    drop(dispatcher);
    // What the dispatcher never saw whole gets its 1003 here: a framing
    // error, or a request cut short (the client may have only half-closed).
    let refusal = match conn.framing_error() {
        Some(e) => Some(e),
        None if conn.request_end() == BlockEnd::CutShort
            && !conn.answered()
            && matches!(end, SessionEnd::Closed | SessionEnd::Truncated) =>
        {
            Some(BlockError::CutShort)
        }
        None => None,
    };
    if let Some(e) = refusal {
        log::info!("{peer} block request refused: {e}");
        if let Err(e) = conn.refuse(e.reason()) {
            log::debug!("{peer}: the refusal could not be sent: {e}");
        }
    } else {
        match &end {
            SessionEnd::Transport(e) => log::info!("{peer}: disconnected: {e}"),
            SessionEnd::Aborted(e) => log::warn!("{peer}: restore aborted: {e}"),
            SessionEnd::Internal => log::error!("{peer}: dispatcher invariant broken; connection closed"),
            other => log::debug!("{peer}: session ended: {other:?}"),
        }
    }
    let conn = conn.inner_mut();
    if conn.send_timed_out() {
        return Ok(());
    }
    // One request per connection: the answer is out. Read what the client
    // still sends (the padding of its last block) so closing sends no reset.
    conn.shutdown_write();
    conn.set_deadline(Instant::now() + DRAIN_TIME);
    let drained = drain(conn, &mut buf, DRAIN_LIMIT);
    log::debug!("{peer}: drained: {drained:?}");
    Ok(())
}
