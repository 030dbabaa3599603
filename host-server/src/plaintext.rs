//! `--plaintext allow|loopback|deny`: which peers may use the unauthenticated
//! protocol versions 1 and 2. Users with a key are never served in
//! plaintext whatever this says ([`backup_core::access`]).

use std::net::IpAddr;

/// Who is served versions 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Plaintext {
    /// Every peer: for networks that are secured already.
    Allow,
    /// Only this machine (127.0.0.0/8 and ::1): existing local clients keep
    /// working, and nothing readable crosses a network.
    #[default]
    Loopback,
    /// No peer: version 3 only.
    Deny,
}

impl Plaintext {
    /// Whether a plaintext session is served to `peer`.
    pub fn serves(self, peer: IpAddr) -> bool {
        match self {
            Plaintext::Allow => true,
            Plaintext::Loopback => match peer {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
            },
            Plaintext::Deny => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_serves_only_this_machine() {
        for ok in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(Plaintext::Loopback.serves(ok.parse().unwrap()), "{ok}");
        }
        for no in ["10.0.0.1", "192.0.2.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!Plaintext::Loopback.serves(no.parse().unwrap()), "{no}");
        }
        assert!(!Plaintext::Deny.serves("127.0.0.1".parse().unwrap()));
        assert!(Plaintext::Allow.serves("192.0.2.1".parse().unwrap()));
    }
}
