//! Byte vectors of the handshake and the records, the official Noise test
//! vector for the pattern, fragmentation at every byte, and hostile records.

use std::vec::Vec;

use rand_core::{CryptoRng, RngCore};

use super::*;
use crate::secure::handshake::write_auth_failed;
use crate::wire::RESPONSE_MIN_HEADER_LEN;

/// Yields the same bytes over and over: a fixed ephemeral key per handshake.
pub(crate) struct FixedRng(pub [u8; 32]);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for (d, s) in dest.iter_mut().zip(self.0.iter().cycle()) {
            *d = *s;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2).map(|p| u8::from_str_radix(core::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

const USER: u32 = 7;
const PSK: [u8; 32] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];
const CLIENT_E: [u8; 32] = [0x11; 32];
const SERVER_E: [u8; 32] = [0x22; 32];

/// HELLO (user 7) and framed message 1 (max_record 1024) under [`PSK`] with
/// ephemeral key [`CLIENT_E`]: the bytes of PROTOCOL.md's example.
const CLIENT_FLIGHT: &str = "07000000 0301 \
    3200 7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13 \
    c7ba b25c3d5871dcde0419c146b6620e70ef";
/// Framed message 2 (max_record 4096) with ephemeral key [`SERVER_E`].
const MSG2: &str = "3200 0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20 \
    498f 62b05bdd3cbe5ec020b1d43dcde630ce";
/// The client's first record: a version-3 list request of user 7.
const FIRST_RECORD: &str = "1600 0f2d88d44e9d 43cf2c0584c1ac321fa22a1dd3c85651";
const LIST_REQUEST: [u8; 6] = [0x07, 0x00, 0x00, 0x00, 0x03, 0xca];
/// The plaintext 1003 `authentication failed`.
const AUTH_FAILED: &str = "03 eb03 0000 15000000 61757468656e7469636174696f6e206661696c6564";

fn client_start(max_record: u16) -> (ClientHandshake, Vec<u8>) {
    let mut out = [0u8; CLIENT_FIRST_FLIGHT_LEN];
    let (client, n) =
        ClientHandshake::start(USER, &PSK, max_record, &mut FixedRng(CLIENT_E), &mut out).unwrap();
    (client, out[..n].to_vec())
}

fn server_for(psk: Option<&[u8; 32]>) -> ServerHandshake {
    ServerHandshake::new(Hello { user_id: USER }, psk, 4096, &mut FixedRng(SERVER_E)).unwrap()
}

/// Both sides through the handshake with the fixed keys.
fn session() -> (Transport, Transport) {
    let (mut client, flight) = client_start(1024);
    let mut server = server_for(Some(&PSK));
    assert_eq!(server.feed(&flight[HELLO_LEN..]), MSG1_FRAMED_LEN);
    let mut reply = [0u8; SERVER_REPLY_MAX_LEN];
    let (n, outcome) = server.respond(&mut reply).unwrap();
    assert_eq!(client.feed(&reply[..n]), MSG2_FRAMED_LEN);
    let ServerOutcome::Accepted(server) = outcome else { panic!("refused") };
    (client.finish().unwrap(), server)
}

#[test]
fn the_client_flight_is_hello_then_framed_message_1() {
    let (_, flight) = client_start(1024);
    assert_eq!(flight, hex(CLIENT_FLIGHT));
    assert_eq!(flight.len(), CLIENT_FIRST_FLIGHT_LEN);
    assert_eq!(Hello::parse(flight[..6].try_into().unwrap()), Ok(Hello { user_id: 7 }));
}

#[test]
fn message_1_carries_the_ephemeral_key_drawn_from_the_callers_rng() {
    // X25519 public key of [0x11; 32], clamped: computed independently of
    // the handshake, so an ephemeral key not drawn from our RNG shows here.
    let public = x25519_public(&CLIENT_E);
    assert_eq!(&hex(CLIENT_FLIGHT)[8..40], &public[..]);
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    use clatter::bytearray::ByteArray;
    use clatter::traits::Dh;
    let k = <clatter::crypto::dh::X25519 as Dh>::PrivateKey::from_slice(secret);
    <clatter::crypto::dh::X25519 as Dh>::pubkey(&k)
}

#[test]
fn the_server_answers_message_1_with_framed_message_2() {
    let mut server = server_for(Some(&PSK));
    server.feed(&hex(CLIENT_FLIGHT)[HELLO_LEN..]);
    let mut reply = [0u8; SERVER_REPLY_MAX_LEN];
    let (n, outcome) = server.respond(&mut reply).unwrap();
    assert_eq!(reply[..n], hex(MSG2)[..]);
    let ServerOutcome::Accepted(transport) = outcome else { panic!("refused") };
    assert_eq!((transport.peer_max_record(), transport.max_record()), (1024, 4096));
}

#[test]
fn the_first_record_matches_the_vector_and_opens_to_the_request() {
    let (client, server) = session();
    assert_eq!((client.peer_max_record(), client.max_record()), (4096, 1024));
    let (mut sealer, _) = client.split();
    let (_, mut opener) = server.split();
    let mut record = [0u8; 64];
    let n = sealer.seal(&LIST_REQUEST, &mut record).unwrap();
    assert_eq!(record[..n], hex(FIRST_RECORD)[..]);
    let mut rx = [0u8; rx_buffer_len(4096)];
    let (used, plain) = opener.feed(&mut rx, &record[..n]).unwrap();
    assert_eq!((used, &rx[plain.unwrap()]), (n, &LIST_REQUEST[..]));
}

#[test]
fn the_refusal_is_a_plaintext_version_3_error_response() {
    let mut out = [0u8; AUTH_FAILED_LEN];
    assert_eq!(write_auth_failed(&mut out), Ok(AUTH_FAILED_LEN));
    assert_eq!(out[..], hex(AUTH_FAILED)[..]);
}

/// cacophony.txt, as shipped in snow's tests/vectors: the official vector of
/// this pattern, through the same clatter construction the machines use.
#[test]
fn the_official_noise_vector_of_nnpsk0_25519_chachapoly_sha256_holds() {
    use clatter::traits::Handshaker;
    let prologue = hex("4a6f686e2047616c74");
    let psk: [u8; 32] =
        hex("54686973206973206d7920417573747269616e20706572737065637469766521").try_into().unwrap();
    let init_e: [u8; 32] =
        hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a").try_into().unwrap();
    let resp_e: [u8; 32] =
        hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b").try_into().unwrap();
    let messages = [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794479b962b8aff8485742ac32f905ba45369e2465fb59e138a93d67a0d1266b6a54",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d6062704d5a9c422a8e834423f8c1feada7e8d0d910a1a2cd030fb584221e3",
        ),
        ("462e20412e20486179656b", "e632c3763d7669067383433197a3baddf146e9e70ad4b4e9e59e0f"),
        ("4361726c204d656e676572", "64c6bee32ea91c8474bb4c21d7a700109ad45af77b29764ba5eb1e"),
        (
            "4a65616e2d426170746973746520536179",
            "e2fa0bed0603b62d3ccac2ecabbf3fe33f3e86514909b323361626266cb2471cc8",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "0c01dc9cec1fe4ddd692e8dd32188aa351088dc91183639a53b57aa4692b5ebdef8b8ca111",
        ),
    ];
    let mut init = noise::start_with_prologue(true, &prologue, &psk, &mut FixedRng(init_e)).unwrap();
    let mut resp = noise::start_with_prologue(false, &prologue, &psk, &mut FixedRng(resp_e)).unwrap();
    let mut buf = [0u8; 128];
    let mut got = [0u8; 128];
    let (payload, ciphertext) = (hex(messages[0].0), hex(messages[0].1));
    let n = init.write_message(&payload, &mut buf).unwrap();
    assert_eq!(buf[..n], ciphertext[..], "message 1");
    let m = resp.read_message(&buf[..n], &mut got).unwrap();
    assert_eq!(got[..m], payload[..]);
    let (payload, ciphertext) = (hex(messages[1].0), hex(messages[1].1));
    let n = resp.write_message(&payload, &mut buf).unwrap();
    assert_eq!(buf[..n], ciphertext[..], "message 2");
    let m = init.read_message(&buf[..n], &mut got).unwrap();
    assert_eq!(got[..m], payload[..]);
    let (mut i_send, mut i_recv) = noise::split(init).unwrap();
    let (mut r_send, mut r_recv) = noise::split(resp).unwrap();
    for (k, (payload, ciphertext)) in messages[2..].iter().enumerate() {
        let (payload, ciphertext) = (hex(payload), hex(ciphertext));
        let (send, recv) = if k % 2 == 0 { (&mut i_send, &mut r_recv) } else { (&mut r_send, &mut i_recv) };
        buf[..payload.len()].copy_from_slice(&payload);
        let n = send.encrypt_with_ad_in_place(&[], &mut buf, payload.len()).unwrap();
        assert_eq!(buf[..n], ciphertext[..], "transport message {}", k + 3);
        let m = recv.decrypt_with_ad_in_place(&[], &mut buf, n).unwrap();
        assert_eq!(buf[..m], payload[..]);
    }
}

#[test]
fn message_1_split_at_every_byte_still_completes() {
    let flight = hex(CLIENT_FLIGHT);
    let msg1 = &flight[HELLO_LEN..];
    for split in 0..=msg1.len() {
        let mut server = server_for(Some(&PSK));
        assert_eq!(server.feed(&msg1[..split]), split);
        assert_eq!(server.needed(), msg1.len() - split);
        assert_eq!(server.feed(&msg1[split..]), msg1.len() - split);
        let mut reply = [0u8; SERVER_REPLY_MAX_LEN];
        let (n, outcome) = server.respond(&mut reply).unwrap();
        assert!(matches!(outcome, ServerOutcome::Accepted(_)), "split {split}");
        assert_eq!(reply[..n], hex(MSG2)[..]);
    }
    let mut server = server_for(Some(&PSK));
    for byte in msg1 {
        assert_eq!(server.feed(core::slice::from_ref(byte)), 1);
    }
    assert_eq!(server.needed(), 0);
    assert!(matches!(server.respond(&mut [0u8; 64]), Ok((MSG2_FRAMED_LEN, ServerOutcome::Accepted(_)))));
}

#[test]
fn message_2_split_at_every_byte_still_completes() {
    // `needed` asks for the prefix alone first, so a blocking reader never
    // takes the reason of a plaintext refusal along with its header.
    let msg2 = hex(MSG2);
    for split in 0..=msg2.len() {
        let (mut client, _) = client_start(1024);
        assert_eq!(client.feed(&msg2[..split]), split);
        // Only the length prefix is asked for until it is in.
        let expected = if split < 2 { 2 - split } else { msg2.len() - split };
        assert_eq!(client.needed(), expected);
        assert_eq!(client.feed(&msg2[split..]), msg2.len() - split);
        assert_eq!(client.finish().map(|t| t.peer_max_record()).ok(), Some(4096), "split {split}");
    }
    let (mut client, _) = client_start(1024);
    for byte in &msg2 {
        assert_eq!(client.feed(core::slice::from_ref(byte)), 1);
    }
    assert!(client.finish().is_ok());
}

#[test]
fn machines_take_no_byte_past_their_message() {
    let mut input = hex(CLIENT_FLIGHT)[HELLO_LEN..].to_vec();
    input.extend_from_slice(&hex(FIRST_RECORD));
    let mut server = server_for(Some(&PSK));
    assert_eq!(server.feed(&input), MSG1_FRAMED_LEN);
    let mut input = hex(MSG2);
    input.extend_from_slice(b"more");
    let (mut client, _) = client_start(1024);
    assert_eq!(client.feed(&input), MSG2_FRAMED_LEN);
}

#[test]
fn a_record_split_at_every_byte_still_opens() {
    let record = hex(FIRST_RECORD);
    for split in 0..=record.len() {
        let (_, server) = session();
        let (_, mut opener) = server.split();
        let mut rx = [0u8; rx_buffer_len(4096)];
        let (a, first) = opener.feed(&mut rx, &record[..split]).unwrap();
        assert_eq!((a, first.is_some()), (split, split == record.len()));
        if split < record.len() {
            assert_eq!(opener.needed(), if split < 2 { 2 - split } else { record.len() - split });
            let (b, plain) = opener.feed(&mut rx, &record[split..]).unwrap();
            assert_eq!(b, record.len() - split);
            assert_eq!(rx[plain.unwrap()], LIST_REQUEST, "split {split}");
        }
    }
}

fn refusal_for(server: ServerHandshake) -> Vec<u8> {
    let mut reply = [0u8; SERVER_REPLY_MAX_LEN];
    let (n, outcome) = server.respond(&mut reply).unwrap();
    assert!(matches!(outcome, ServerOutcome::Refused));
    reply[..n].to_vec()
}

#[test]
fn a_wrong_key_and_an_unknown_user_get_the_same_refusal() {
    let msg1 = &hex(CLIENT_FLIGHT)[HELLO_LEN..];
    let mut wrong = server_for(Some(&[0x99; 32]));
    wrong.feed(msg1);
    let mut unknown = server_for(None);
    unknown.feed(msg1);
    assert_eq!(refusal_for(wrong), hex(AUTH_FAILED));
    assert_eq!(refusal_for(unknown), hex(AUTH_FAILED));
}

#[test]
fn an_unknown_user_is_refused_even_under_the_dummy_key() {
    let mut out = [0u8; CLIENT_FIRST_FLIGHT_LEN];
    let (_, n) = ClientHandshake::start(USER, &[0u8; 32], 1024, &mut FixedRng(CLIENT_E), &mut out).unwrap();
    let mut unknown = server_for(None);
    unknown.feed(&out[HELLO_LEN..n]);
    assert_eq!(refusal_for(unknown), hex(AUTH_FAILED));
}

#[test]
fn message_1_for_another_user_id_is_refused() {
    // The prologue holds the HELLO: the same message 1 under another user
    // id (with that user holding the same key) does not decrypt.
    let mut server =
        ServerHandshake::new(Hello { user_id: 8 }, Some(&PSK), 4096, &mut FixedRng(SERVER_E)).unwrap();
    server.feed(&hex(CLIENT_FLIGHT)[HELLO_LEN..]);
    assert_eq!(refusal_for(server), hex(AUTH_FAILED));
}

#[test]
fn a_flipped_bit_in_message_1_is_refused() {
    let msg1 = hex(CLIENT_FLIGHT)[HELLO_LEN..].to_vec();
    for bit in 16..msg1.len() * 8 {
        let mut bad = msg1.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut server = server_for(Some(&PSK));
        server.feed(&bad);
        assert_eq!(refusal_for(server), hex(AUTH_FAILED), "bit {bit}");
    }
}

#[test]
fn a_wrong_length_prefix_is_refused_after_two_bytes() {
    for prefix in [[0x00, 0x00], [0x31, 0x00], [0x33, 0x00], [0x32, 0x01], [0xff, 0xff]] {
        let mut server = server_for(Some(&PSK));
        assert_eq!(server.feed(&[prefix[0], prefix[1], 0xaa, 0xbb]), 2);
        assert_eq!(server.needed(), 0);
        assert_eq!(refusal_for(server), hex(AUTH_FAILED));
    }
}

#[test]
fn a_truncated_message_1_is_not_answered() {
    let mut server = server_for(Some(&PSK));
    server.feed(&hex(CLIENT_FLIGHT)[HELLO_LEN..CLIENT_FIRST_FLIGHT_LEN - 1]);
    assert_eq!(server.needed(), 1);
    assert!(matches!(server.respond(&mut [0u8; 64]), Err(HandshakeError::NotComplete)));
}

#[test]
fn the_client_reports_a_plaintext_refusal_with_its_header() {
    let (mut client, _) = client_start(1024);
    let refusal = hex(AUTH_FAILED);
    assert_eq!(client.feed(&refusal), RESPONSE_MIN_HEADER_LEN, "the reason stays for the shell");
    assert_eq!(
        client.finish().err(),
        Some(HandshakeError::Refused { version: 3, status: 1003, reason_len: 21 })
    );
    // An old server: version 2, 1003, "unknown op".
    let (mut client, _) = client_start(1024);
    let old = hex("02 eb03 0000 0a000000 756e6b6e6f776e206f70");
    assert_eq!(client.feed(&old), RESPONSE_MIN_HEADER_LEN);
    assert_eq!(
        client.finish().err(),
        Some(HandshakeError::Refused { version: 2, status: 1003, reason_len: 10 })
    );
}

#[test]
fn the_client_refuses_a_message_2_under_another_key() {
    let (_, flight) = client_start(1024);
    let mut out = [0u8; CLIENT_FIRST_FLIGHT_LEN];
    let (mut client, _) =
        ClientHandshake::start(USER, &[0x99; 32], 1024, &mut FixedRng(CLIENT_E), &mut out).unwrap();
    let mut server = server_for(Some(&PSK));
    server.feed(&flight[HELLO_LEN..]);
    let mut reply = [0u8; SERVER_REPLY_MAX_LEN];
    let (n, _) = server.respond(&mut reply).unwrap();
    client.feed(&reply[..n]);
    assert_eq!(client.finish().err(), Some(HandshakeError::AuthenticationFailed));
}

#[test]
fn max_record_under_64_is_refused_on_both_sides() {
    let mut out = [0u8; CLIENT_FIRST_FLIGHT_LEN];
    assert!(matches!(
        ClientHandshake::start(USER, &PSK, 63, &mut FixedRng(CLIENT_E), &mut out),
        Err(HandshakeError::BufferTooSmall)
    ));
    assert!(ServerHandshake::new(Hello { user_id: USER }, Some(&PSK), 63, &mut FixedRng(SERVER_E)).is_err());
    // A client that authenticates but announces 63 gets nothing back.
    use clatter::traits::Handshaker;
    let mut noise = noise::start(true, Hello { user_id: USER }, &PSK, &mut FixedRng(CLIENT_E)).unwrap();
    let mut msg1 = [0u8; MSG1_FRAMED_LEN];
    msg1[..2].copy_from_slice(&[0x32, 0x00]);
    noise.write_message(&63u16.to_le_bytes(), &mut msg1[2..]).unwrap();
    let mut server = server_for(Some(&PSK));
    server.feed(&msg1);
    assert!(matches!(server.respond(&mut [0u8; 64]), Err(HandshakeError::BadMaxRecord(63))));
}

fn opened(opener: &mut Opener, record: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut rx = [0u8; rx_buffer_len(4096)];
    let (_, plain) = opener.feed(&mut rx, record)?;
    Ok(plain.map(|p| rx[p].to_vec()).unwrap_or_default())
}

#[test]
fn a_record_with_a_flipped_bit_is_refused_and_nothing_is_delivered() {
    let record = hex(FIRST_RECORD);
    for bit in 16..record.len() * 8 {
        let (_, server) = session();
        let (_, mut opener) = server.split();
        let mut bad = record.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(opened(&mut opener, &bad), Err(RecordError::Decrypt), "bit {bit}");
        assert!(opener.is_failed());
        assert_eq!(opened(&mut opener, &record), Err(RecordError::Failed), "nothing after a fault");
    }
}

#[test]
fn record_lengths_0_16_and_over_max_record_are_refused() {
    for len in [0u16, 16, 4097, 65535] {
        let (_, server) = session();
        let (_, mut opener) = server.split();
        let header = len.to_le_bytes();
        assert_eq!(opened(&mut opener, &header), Err(RecordError::BadLength(len)));
    }
    // 17 is the least: one byte of plaintext.
    let (client, server) = session();
    let (mut sealer, _) = client.split();
    let (_, mut opener) = server.split();
    let mut record = [0u8; 32];
    let n = sealer.seal(b"x", &mut record).unwrap();
    assert_eq!(record[..2], [17, 0]);
    assert_eq!(opened(&mut opener, &record[..n]), Ok(b"x".to_vec()));
}

#[test]
fn a_replayed_or_reordered_record_is_refused() {
    let (client, server) = session();
    let (mut sealer, _) = client.split();
    let (_, mut opener) = server.split();
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let na = sealer.seal(b"first", &mut a).unwrap();
    let nb = sealer.seal(b"second", &mut b).unwrap();
    assert_eq!(opened(&mut opener, &a[..na]), Ok(b"first".to_vec()));
    assert_eq!(opened(&mut opener, &a[..na]), Err(RecordError::Decrypt));
    let (client, server) = session();
    let (_, mut opener) = server.split();
    drop(client);
    assert_eq!(opened(&mut opener, &b[..nb]), Err(RecordError::Decrypt), "record 2 as the first");
}

#[test]
fn sealing_refuses_empty_and_oversized_plaintext() {
    let (client, _) = session();
    let (mut sealer, _) = client.split();
    let mut out = [0u8; 8192];
    assert_eq!(sealer.max_plaintext(), 4096 - TAG_LEN);
    assert_eq!(sealer.seal(b"", &mut out), Err(RecordError::BufferTooSmall));
    assert_eq!(sealer.seal(&[0u8; 4081], &mut out), Err(RecordError::BufferTooSmall));
    assert_eq!(sealer.seal(&[0u8; 4080], &mut out), Ok(4096 + RECORD_HEADER_LEN));
    assert_eq!(sealer.seal(&[0u8; 10], &mut out[..27]), Err(RecordError::BufferTooSmall));
}

#[test]
fn the_reserved_last_nonce_is_never_used() {
    let (client, server) = session();
    let (mut sealer, _) = client.split();
    let (_, mut opener) = server.split();
    sealer.set_nonce(u64::MAX - 1);
    opener.set_nonce(u64::MAX - 1);
    let mut out = [0u8; 32];
    let n = sealer.seal(b"last", &mut out).unwrap();
    assert_eq!(opened(&mut opener, &out[..n]), Ok(b"last".to_vec()));
    assert_eq!(sealer.seal(b"one more", &mut out), Err(RecordError::NonceExhausted));
    // The opener refuses too, even a record that would decrypt under n = 2^64-1.
    let (client, _) = session();
    let (mut other, _) = client.split();
    other.set_nonce(u64::MAX);
    assert_eq!(other.seal(b"x", &mut out), Err(RecordError::NonceExhausted));
    opener.set_nonce(u64::MAX);
    let fake = hex("1100 00000000000000000000000000000000 00");
    assert_eq!(opened(&mut opener, &fake), Err(RecordError::NonceExhausted));
}

#[test]
fn a_receive_buffer_under_the_length_prefix_is_an_error_not_a_hang() {
    let (_, server) = session();
    let (_, mut opener) = server.split();
    let mut rx = [0u8; 1];
    assert_eq!(opener.feed(&mut rx, &[0x11, 0x00]), Err(RecordError::BufferTooSmall));
}

#[test]
fn the_state_the_machines_keep_is_small() {
    use core::mem::size_of;
    std::println!(
        "ClientHandshake {} B, ServerHandshake {} B, Transport {} B, Sealer {} B, Opener {} B",
        size_of::<ClientHandshake>(),
        size_of::<ServerHandshake>(),
        size_of::<Transport>(),
        size_of::<Sealer>(),
        size_of::<Opener>()
    );
    assert!(size_of::<ClientHandshake>() <= 1024);
    assert!(size_of::<Transport>() <= 160);
}

/// The hex of every ```text block of PROTOCOL.md's version-3 examples, one
/// string per block (comments after the bytes dropped).
fn protocol_md_blocks() -> Vec<Vec<u8>> {
    let md = include_str!("../../PROTOCOL.md");
    let start = md.find("### Version 3 examples").unwrap();
    let end = md[start..].find("### Version 3 limits").unwrap() + start;
    let mut blocks = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in md[start..end].lines() {
        if line.starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(Vec::new()),
            }
        } else if let Some(block) = current.as_mut() {
            let bytes =
                line.split(' ').take_while(|t| t.len() == 2 && t.bytes().all(|b| b.is_ascii_hexdigit()));
            block.extend(bytes.map(|t| u8::from_str_radix(t, 16).unwrap()));
        }
    }
    blocks
}

#[test]
fn protocol_md_shows_exactly_the_tested_vectors() {
    let blocks = protocol_md_blocks();
    assert_eq!(blocks, [hex(CLIENT_FLIGHT), hex(MSG2), hex(FIRST_RECORD), hex(AUTH_FAILED)]);
}
