//! Who is served in plaintext (versions 1 and 2): `--plaintext` by peer
//! address, and never a user that has a key. Addresses other than loopback
//! come from a network namespace the test makes for itself.

mod support;

use std::io::Write;

use backup_server::plaintext::Plaintext;
use backup_server::users::Registry;
use support::netns::{self, OTHER_IP, SERVER_IP};
use support::{LIST, PlainClient, TestServer, read_reply, request};

const PLAINTEXT_REFUSED: &str =
    "plaintext sessions are not served to your address; use an authenticated session (protocol version 3)";
const KEY_REQUIRED: &str = "this user requires an authenticated session (protocol version 3)";

#[test]
fn a_user_with_a_key_is_refused_in_plaintext_even_from_loopback() {
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |_| {});
    let mut plain = PlainClient::new(&server, 4242);
    assert_eq!(plain.call(LIST, b"", None).status, 1002, "no key yet: served (no files)");
    Registry::edit(&server.root).unwrap().add(Some(4242), None).unwrap();
    let mut plain = PlainClient::new(&server, 4242);
    let reply = plain.call(LIST, b"", None);
    assert_eq!(
        (reply.status, reply.reason()),
        (1003, KEY_REQUIRED),
        "the key takes effect without a restart"
    );
    let mut other = PlainClient::new(&server, 4243);
    assert_eq!(other.call(LIST, b"", None).status, 1002, "users without a key are still served");
}

#[test]
fn by_default_plaintext_is_refused_to_peers_off_this_machine() {
    if !netns::inside("by_default_plaintext_is_refused_to_peers_off_this_machine") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(root.path(), |c| c.listen = (SERVER_IP, 0).into());
    let mut stream = netns::connect_from(OTHER_IP, server.addr);
    stream.write_all(&request(7, LIST, b"", None)).unwrap();
    let reply = read_reply(&mut stream).unwrap();
    assert_eq!((reply.version, reply.status, reply.reason()), (2, 1003, PLAINTEXT_REFUSED));
    assert!(!root.path().join("7").exists());
}

#[test]
fn plaintext_allow_serves_every_peer_and_deny_none() {
    if !netns::inside("plaintext_allow_serves_every_peer_and_deny_none") {
        return;
    }
    for (policy, from, served) in [
        (Plaintext::Allow, OTHER_IP, true),
        (Plaintext::Deny, OTHER_IP, false),
        (Plaintext::Deny, "127.0.0.1".parse().unwrap(), false),
        (Plaintext::Loopback, "127.0.0.1".parse().unwrap(), true),
    ] {
        let root = tempfile::tempdir().unwrap();
        let listen = if from.is_loopback() { "127.0.0.1".parse().unwrap() } else { SERVER_IP };
        let server = TestServer::start_in(root.path(), |c| {
            c.listen = (listen, 0).into();
            c.plaintext = policy;
        });
        let mut stream = netns::connect_from(from, server.addr);
        stream.write_all(&request(7, LIST, b"", None)).unwrap();
        let reply = read_reply(&mut stream).unwrap();
        assert_eq!(reply.status == 1002, served, "{policy:?} from {from}: {reply:?}");
    }
}
