//! The server behind a real HAProxy (`send-proxy-v2`), in a network
//! namespace of the test's own: the client's address from the PROXY
//! header decides the plaintext policy, a version-3 session works through
//! the balancer, health checks (PROXY `LOCAL` then a real request) keep the
//! server up, and a PROXY header from an untrusted address is refused.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use backup_server::proxy_header::TrustedProxies;
use backup_server::users::Registry;
use support::netns::{self, OTHER_IP, SERVER_IP};
use support::noise::Session;
use support::{LIST, TestServer, read_reply, request};

const PLAINTEXT_REFUSED: &str =
    "plaintext sessions are not served to your address; use an authenticated session (protocol version 3)";

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy on `front` (every address of the namespace), relaying to
/// `server` with PROXY v2 and health-checking it every 100 ms.
fn haproxy(dir: &std::path::Path, front: u16, server: SocketAddr) -> Haproxy {
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n\
         frontend backup\n  bind :{front}\n  default_backend servers\n\
         backend servers\n  option tcp-check\n  tcp-check connect default\n  tcp-check send-binary 0100000002ca\n  \
         tcp-check expect binary 02\n  \
         server s1 {server} send-proxy-v2 check-send-proxy check inter 100ms fall 1 rise 1\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy runs (apt-get install haproxy; bash .ci/setup does)");
    Haproxy(child)
}

fn list_reply(from: std::net::IpAddr, to: SocketAddr) -> support::Reply {
    let mut stream = netns::connect_from(from, to);
    stream.write_all(&request(51, LIST, b"", None)).unwrap();
    read_reply(&mut stream).unwrap()
}

#[test]
fn behind_haproxy_the_clients_own_address_decides() {
    if !netns::inside("behind_haproxy_the_clients_own_address_decides") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(&dir.path().join("root"), |c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.idle_timeout = Duration::from_secs(2);
        c.trusted_proxies = Some(TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()]));
    });
    let port = server.addr.port();
    let key = *Registry::edit(&server.root).unwrap().add(Some(7000), None).unwrap().key.bytes();
    let front = port.wrapping_add(1).max(1024);
    let _haproxy = haproxy(dir.path(), front, SocketAddr::from(([127, 0, 0, 1], port)));
    // Long enough for several health checks: a failing one would mark the
    // server down, and the requests below would find no server.
    std::thread::sleep(Duration::from_millis(800));
    let via_outside = SocketAddr::new(SERVER_IP, front);
    let via_loopback = SocketAddr::from(([127, 0, 0, 1], front));

    // Plaintext from this machine, through the balancer: served.
    let reply = list_reply("127.0.0.1".parse().unwrap(), via_loopback);
    assert_eq!((reply.version, reply.status), (2, 1002), "{reply:?}");
    // Plaintext from another address: the server sees 10.9.0.2, not the
    // balancer's 127.0.0.1, and refuses it.
    let reply = list_reply(OTHER_IP, via_outside);
    assert_eq!((reply.status, reply.reason()), (1003, PLAINTEXT_REFUSED));
    // Version 3 from that address works through the balancer.
    let mut session = Session::open_on(netns::connect_from(OTHER_IP, via_outside), 7000, &key).unwrap();
    assert_eq!(session.call(support::BACKUP, b"f", Some(b"through haproxy")).status, 212);
    drop(session);
    // A PROXY header sent straight to the server from an untrusted address
    // is refused, whatever it claims.
    let mut forged = netns::connect_from(OTHER_IP, SocketAddr::new(SERVER_IP, port));
    forged
        .write_all(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x9c\x40\x1c\xcd")
        .unwrap();
    forged.write_all(&request(51, LIST, b"", None)).unwrap();
    let reply = read_reply(&mut forged).unwrap();
    assert_eq!(
        (reply.status, reply.reason()),
        (1003, "PROXY protocol header from an address not in the server's --trusted-proxy")
    );
}
