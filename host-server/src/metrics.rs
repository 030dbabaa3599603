//! What the server counts, for Prometheus: `--metrics ADDR:PORT` serves
//! `GET /metrics` in the text exposition format.
//!
//! Protocol threads only bump atomics (and take a family's read lock to
//! find a label set's counter); the HTTP side is one thread of its own,
//! answering one scrape at a time with timeouts, and renders the text
//! before it writes any of it, so a slow, stuck or flooding scraper never
//! waits on, or makes wait, a connection being served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's operation and the status it got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpStatus {
    op: &'static str,
    status: String,
}

/// An operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Why something was refused or failed: one of the core's fixed reasons.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

type DurationFamily = Family<OpLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 2 minutes: a list on loopback to a 4 GiB transfer.
    Histogram::new(exponential_buckets(0.0005, 4.0, 10))
}

/// The server's counters; clones share them.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<OpStatus, Counter>,
    errors: Family<Reason, Counter>,
    durations: DurationFamily,
    received: Counter,
    sent: Counter,
    connections_open: Gauge,
    connections_refused: Family<Reason, Counter>,
    handshake_failures: Counter,
    group_commits: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every counter at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("backup");
        let requests = Family::<OpStatus, Counter>::default();
        registry.register("requests", "Requests served, by operation and status", requests.clone());
        let errors = Family::<Reason, Counter>::default();
        registry.register(
            "request_errors",
            "Requests answered 1003, by reason (store errors among them: server storage full, I/O error, ...)",
            errors.clone(),
        );
        let durations: DurationFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's first byte to its response, by operation",
            durations.clone(),
        );
        let received = Counter::default();
        registry.register("received_bytes", "File bytes received in backups", received.clone());
        let sent = Counter::default();
        registry.register("sent_bytes", "File and listing bytes sent in restores and lists", sent.clone());
        let connections_open = Gauge::default();
        registry.register("connections_open", "Connections being served", connections_open.clone());
        let connections_refused = Family::<Reason, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections refused before a session, by reason",
            connections_refused.clone(),
        );
        let handshake_failures = Counter::default();
        registry.register(
            "handshake_failures",
            "Version-3 handshakes that did not succeed (wrong key, unknown user, cut, stalled)",
            handshake_failures.clone(),
        );
        let group_commits = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "group_commit_batch_size",
            "Backups made durable by one shared sync",
            group_commits.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            errors,
            durations,
            received,
            sent,
            connections_open,
            connections_refused,
            handshake_failures,
            group_commits,
        }
    }

    /// A request ended: `op` and `status` (`None`: no response was sent),
    /// its payload bytes, its time, and the reason of a 1003.
    pub fn request(
        &self,
        op: &'static str,
        status: Option<u16>,
        bytes: u64,
        took: Duration,
        reason: Option<&'static str>,
    ) {
        let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        self.requests.get_or_create(&OpStatus { op, status }).inc();
        self.durations.get_or_create(&OpLabel { op }).observe(took.as_secs_f64());
        if let Some(reason) = reason {
            self.errors.get_or_create(&Reason { reason }).inc();
        }
        match op {
            "backup" => self.received.inc_by(bytes),
            _ => self.sent.inc_by(bytes),
        };
    }

    /// A connection is being served until the guard drops.
    pub fn connection(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// A connection was refused before a session, for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&Reason { reason }).inc();
    }

    /// A version-3 handshake failed.
    pub fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    /// One sync made `backups` backups durable.
    pub fn group_commit(&self, backups: usize) {
        self.group_commits.observe(backups as f64);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Serves `GET /metrics` on `addr` from one thread of its own; returns
    /// the address bound (for port 0).
    pub fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let metrics = self.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || {
            for stream in listener.incoming().flatten() {
                // A scraper that hung up or stalled is no concern of the server's.
                let _ = answer(stream, &metrics);
            }
        })?;
        Ok(bound)
    }
}

/// How long one scrape may take to send its request, and to take our
/// answer. Scrapes are answered one at a time on one thread, so however
/// many connections arrive (on a port that should not be public anyway)
/// they cost one thread and this much waiting each, and never a thread the
/// protocol's connections could have had.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read: a scrape's is a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8192;

/// Reads one request head (parsed by `httparse`) and answers it: the
/// metrics for `GET /metrics`, 404 or 400 for anything else.
fn answer(mut stream: std::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    let (status, body) = loop {
        let n = stream.read(&mut head[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break match (request.method, request.path) {
                    (Some("GET"), Some("/metrics")) => ("200 OK", metrics.render()),
                    _ => ("404 Not Found", "only GET /metrics is served here\n".to_string()),
                };
            }
            Ok(httparse::Status::Partial) if len < head.len() => continue,
            _ => break ("400 Bad Request", "a malformed or oversized request\n".to_string()),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// A connection counted as open; dropping it counts it closed.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_moves_its_counters_by_exactly_what_it_did() {
        let m = Metrics::new();
        m.request("backup", Some(212), 1000, Duration::from_millis(3), None);
        m.request("restore", Some(1003), 0, Duration::from_millis(1), Some("no such file"));
        m.handshake_failed();
        m.refused("too many connections from your address");
        m.group_commit(3);
        let open = m.connection();
        let text = m.render();
        for line in [
            "backup_requests_total{op=\"backup\",status=\"212\"} 1",
            "backup_requests_total{op=\"restore\",status=\"1003\"} 1",
            "backup_request_errors_total{reason=\"no such file\"} 1",
            "backup_received_bytes_total 1000",
            "backup_sent_bytes_total 0",
            "backup_handshake_failures_total 1",
            "backup_connections_open 1",
            "backup_connections_refused_total{reason=\"too many connections from your address\"} 1",
            "backup_group_commit_batch_size_count 1",
            "backup_request_duration_seconds_count{op=\"backup\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        drop(open);
        assert!(m.render().lines().any(|l| l == "backup_connections_open 0"));
    }
}
