//! PROXY protocol version 2 (HAProxy's `send-proxy-v2`): a balancer in
//! front of the server says, in a binary header before the client's first
//! byte, whom it is relaying. The server believes it only from the
//! balancers named by `--trusted-proxy`, and then uses the client's address
//! for everything an address decides: the plaintext policy, the per-address
//! connection and handshake limits, and the logs.
//!
//! The header is read with exactly the bytes it has (16, then the length
//! it announces), so the client's first request is left untouched; `ppp`
//! parses it.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

/// The first 12 bytes of every version-2 header.
pub const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Bytes before the address block: signature, version and command,
/// family, length.
const FIXED_LEN: usize = 16;
/// The longest address block and TLVs accepted. HAProxy sends 12 (IPv4) or
/// 36 (IPv6) bytes of addresses and, unless told to add TLVs, nothing more;
/// the spec's own advice is to expect headers of at most 232 bytes.
const MAX_BLOCK_LEN: usize = 1024;

/// The balancers whose PROXY headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// These networks' addresses.
    pub fn new(nets: Vec<ipnet::IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Whether a connection from `ip` must start with a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Whom a balancer's connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client, from this address.
    Client(SocketAddr),
    /// The balancer itself (`LOCAL`: its health checks), or a relayed
    /// connection with no address of the families we know.
    Balancer,
}

/// Why a trusted balancer's connection was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProxyError {
    /// It did not start with a PROXY protocol version-2 header.
    Missing,
    /// The header announced more than we accept.
    TooLong(usize),
    /// The header did not parse.
    Malformed(String),
    /// Reading it failed, or it was cut.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing => f.write_str(
                "no PROXY protocol v2 header from a --trusted-proxy address (is the balancer's `send-proxy-v2` on?)",
            ),
            ProxyError::TooLong(n) => write!(f, "a PROXY header of {n} bytes (at most {MAX_BLOCK_LEN} are accepted)"),
            ProxyError::Malformed(e) => write!(f, "a malformed PROXY header: {e}"),
            ProxyError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Whether a connection's first bytes are (the start of) a PROXY header.
pub fn looks_like_header(first: &[u8]) -> bool {
    !first.is_empty() && (SIGNATURE.starts_with(first) || first.starts_with(SIGNATURE))
}

/// Reads the header a trusted balancer sends first, and nothing after it.
pub fn read_header(stream: &mut impl Read) -> Result<Origin, ProxyError> {
    let mut fixed = [0u8; FIXED_LEN];
    stream.read_exact(&mut fixed).map_err(ProxyError::Io)?;
    if !fixed.starts_with(SIGNATURE) {
        return Err(ProxyError::Missing);
    }
    let block_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if block_len > MAX_BLOCK_LEN {
        return Err(ProxyError::TooLong(FIXED_LEN + block_len));
    }
    let mut header = [0u8; FIXED_LEN + MAX_BLOCK_LEN];
    let whole = header.get_mut(..FIXED_LEN + block_len).ok_or(ProxyError::TooLong(block_len))?;
    whole[..FIXED_LEN].copy_from_slice(&fixed);
    stream.read_exact(&mut whole[FIXED_LEN..]).map_err(ProxyError::Io)?;
    origin(whole)
}

/// The origin a complete header names.
fn origin(header: &[u8]) -> Result<Origin, ProxyError> {
    use ppp::v2::{Addresses, Command, Header};
    let parsed = Header::try_from(header).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(Origin::Balancer);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::IPv6(a) => Origin::Client(SocketAddr::new(a.source_address.into(), a.source_port)),
        _ => Origin::Balancer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy's header for a TCP client 10.9.0.2:40000 reaching 10.9.0.1:7373.
    const IPV4: &[u8] =
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x0a\x09\x00\x02\x0a\x09\x00\x01\x9c\x40\x1c\xcd";
    /// A health check: LOCAL, no addresses.
    const LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

    #[test]
    fn a_header_gives_the_clients_address_and_leaves_the_request_unread() {
        let mut input = IPV4.to_vec();
        input.extend_from_slice(b"\x07\x00\x00\x00\x02\xca");
        let mut reader = &input[..];
        let origin = read_header(&mut reader).unwrap();
        assert_eq!(origin, Origin::Client("10.9.0.2:40000".parse().unwrap()));
        assert_eq!(reader, b"\x07\x00\x00\x00\x02\xca", "the request is untouched");
    }

    #[test]
    fn ipv6_clients_and_health_checks() {
        let mut v6 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
        v6.extend_from_slice(&"2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0x04, 0xd2, 0x1c, 0xcd]);
        assert_eq!(read_header(&mut &v6[..]).unwrap(), Origin::Client("[2001:db8::7]:1234".parse().unwrap()));
        assert_eq!(read_header(&mut &LOCAL[..]).unwrap(), Origin::Balancer);
    }

    #[test]
    fn a_missing_cut_oversized_or_malformed_header_is_refused() {
        assert!(matches!(
            read_header(&mut &b"\x07\x00\x00\x00\x02\xca\0\0\0\0\0\0\0\0\0\0"[..]),
            Err(ProxyError::Missing)
        ));
        for cut in 0..IPV4.len() {
            assert!(matches!(read_header(&mut &IPV4[..cut]), Err(ProxyError::Io(_))), "cut at {cut}");
        }
        let huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff";
        assert!(matches!(read_header(&mut &huge[..]), Err(ProxyError::TooLong(_))));
        let version_one =
            b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c\x0a\x09\x00\x02\x0a\x09\x00\x01\x9c\x40\x1c\xcd";
        assert!(matches!(read_header(&mut &version_one[..]), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn only_the_named_networks_are_trusted() {
        let trusted =
            TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap(), "10.9.0.0/24".parse().unwrap()]);
        assert!(trusted.trusts("127.0.0.1".parse().unwrap()));
        assert!(trusted.trusts("10.9.0.200".parse().unwrap()));
        assert!(trusted.trusts("::ffff:10.9.0.1".parse().unwrap()));
        assert!(!trusted.trusts("127.0.0.2".parse().unwrap()));
        assert!(!trusted.trusts("10.9.1.1".parse().unwrap()));
    }

    #[test]
    fn a_request_never_looks_like_a_header() {
        assert!(looks_like_header(&IPV4[..6]));
        assert!(looks_like_header(IPV4));
        // Version byte 0 would be needed: no request of any version has it.
        assert!(!looks_like_header(b"\x0d\x0a\x0d\x0a\x02\x64"));
        assert!(!looks_like_header(b""));
    }
}
