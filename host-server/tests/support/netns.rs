//! Tests that need addresses other than loopback: the test re-runs itself
//! inside a network namespace of its own (`unshare -n`, as root), where
//! `lo` is brought up with two extra addresses, [`SERVER_IP`] and
//! [`OTHER_IP`]. Nothing outside the namespace is touched.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// The server's non-loopback address inside the namespace.
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));
/// A second client address inside the namespace.
pub const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2));

const INSIDE: &str = "BACKUP_TEST_INSIDE_NETNS";

/// Runs `body` inside a fresh network namespace: true in the re-run test
/// process (run `body` and return), false in the outer one, which waits for
/// the inner run and fails if it failed. `name` is the test's own name.
pub fn inside(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.9.0.1/24", "dev", "lo"],
            &["addr", "add", "10.9.0.2/24", "dev", "lo"],
        ] {
            let status = Command::new("ip").args(args).status().expect("ip runs (apt-get install iproute2)");
            assert!(status.success(), "ip {args:?}");
        }
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("unshare")
        .arg("-n")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .output()
        .expect("unshare runs (util-linux)");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the test inside the namespace failed:\n{text}");
    assert!(text.contains("1 passed"), "the test did not run inside the namespace:\n{text}");
    false
}

/// A TCP connection to `to` from the local address `from`.
pub fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}
