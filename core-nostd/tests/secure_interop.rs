//! Interoperation with `snow`, an independent Noise implementation: our
//! client against a snow responder and a snow initiator against our server,
//! each through the handshake (with our prologue and framing) and records in
//! both directions. With the ephemeral keys of PROTOCOL.md's example fixed on
//! both sides, snow also produces the example's bytes.

use backup_core::secure::{
    ClientHandshake, Hello, LENGTH_PREFIX_LEN, MSG1_FRAMED_LEN, MSG2_FRAMED_LEN, Opener, RECORD_OVERHEAD,
    Sealer, ServerHandshake, ServerOutcome, rx_buffer_len,
};
use rand_core::{CryptoRng, RngCore};

const PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
const USER: u32 = 7;
const PSK: [u8; 32] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];
const CLIENT_E: [u8; 32] = [0x11; 32];
const SERVER_E: [u8; 32] = [0x22; 32];

/// PROTOCOL.md's example: message 1 (after HELLO and its length) and framed message 2.
const EXAMPLE_MSG1: &str =
    "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13c7bab25c3d5871dcde0419c146b6620e70ef";
const EXAMPLE_MSG2: &str = "32000faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20498f62b05bdd3cbe5ec020b1d43dcde630ce";

struct FixedRng([u8; 32]);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
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
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn prologue() -> Vec<u8> {
    let mut p = b"backup-v3".to_vec();
    p.extend_from_slice(&Hello { user_id: USER }.to_bytes());
    p
}

fn snow_builder<'a>(prologue: &'a [u8], e: &'a [u8; 32]) -> snow::Builder<'a> {
    snow::Builder::new(PARAMS.parse().unwrap())
        .psk(0, &PSK)
        .unwrap()
        .prologue(prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(e)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// Records both ways between our halves and a snow transport, of sizes
/// from 1 byte to the largest the receiver accepts.
fn exchange_records(sealer: &mut Sealer, opener: &mut Opener, snow: &mut snow::TransportState) {
    let sizes = [1usize, 2, 17, 100, 1000, usize::from(sealer.peer_max_record()) - 16];
    for (i, &size) in sizes.iter().enumerate() {
        let plain: Vec<u8> = (0..size).map(|k| (k * 7 + i) as u8).collect();
        // Ours → snow.
        let mut record = vec![0u8; size + RECORD_OVERHEAD];
        let n = sealer.seal(&plain, &mut record).unwrap();
        assert_eq!(n, record.len());
        let len = u16::from_le_bytes([record[0], record[1]]) as usize;
        assert_eq!(len, n - LENGTH_PREFIX_LEN);
        let mut got = vec![0u8; len];
        let m = snow.read_message(&record[LENGTH_PREFIX_LEN..], &mut got).unwrap();
        assert_eq!(got[..m], plain[..], "ours to snow, {size} bytes");
        // snow → ours, as a framed record, fed in two pieces.
        let size = size.min(usize::from(opener.max_record()) - 16);
        let plain = &plain[..size];
        let mut ct = vec![0u8; size + 16];
        let c = snow.write_message(plain, &mut ct).unwrap();
        let record = framed(&ct[..c]);
        let mut rx = vec![0u8; rx_buffer_len(opener.max_record())];
        let half = record.len() / 2;
        let (a, none) = opener.feed(&mut rx, &record[..half]).unwrap();
        assert_eq!((a, none), (half, None));
        let (b, opened) = opener.feed(&mut rx, &record[half..]).unwrap();
        assert_eq!(b, record.len() - half);
        assert_eq!(rx[opened.unwrap()], *plain, "snow to ours, {size} bytes");
    }
}

#[test]
fn our_client_and_a_snow_responder_agree() {
    let prologue = prologue();
    let mut flight = [0u8; 64];
    let (mut client, n) =
        ClientHandshake::start(USER, &PSK, 1024, &mut FixedRng(CLIENT_E), &mut flight).unwrap();
    let mut responder = snow_builder(&prologue, &SERVER_E).build_responder().unwrap();
    assert_eq!(&flight[..6], &Hello { user_id: USER }.to_bytes());
    assert_eq!(u16::from_le_bytes([flight[6], flight[7]]) as usize, MSG1_FRAMED_LEN - 2);
    let mut payload = [0u8; 64];
    let p = responder.read_message(&flight[8..n], &mut payload).unwrap();
    assert_eq!(payload[..p], 1024u16.to_le_bytes());
    let mut msg2 = [0u8; 64];
    let m = responder.write_message(&4096u16.to_le_bytes(), &mut msg2).unwrap();
    let msg2 = framed(&msg2[..m]);
    assert_eq!(msg2, hex(EXAMPLE_MSG2), "snow writes PROTOCOL.md's message 2");
    assert_eq!(client.feed(&msg2), MSG2_FRAMED_LEN);
    let transport = client.finish().unwrap();
    assert_eq!(transport.peer_max_record(), 4096);
    let mut snow = responder.into_transport_mode().unwrap();
    let (mut sealer, mut opener) = transport.split();
    exchange_records(&mut sealer, &mut opener, &mut snow);
}

#[test]
fn a_snow_initiator_and_our_server_agree() {
    let prologue = prologue();
    let mut initiator = snow_builder(&prologue, &CLIENT_E).build_initiator().unwrap();
    let mut msg1 = [0u8; 64];
    let m = initiator.write_message(&2048u16.to_le_bytes(), &mut msg1).unwrap();
    assert_eq!(msg1[..32], hex(EXAMPLE_MSG1)[..32], "the same ephemeral key as ours");
    let mut server =
        ServerHandshake::new(Hello { user_id: USER }, Some(&PSK), 4096, &mut FixedRng(SERVER_E)).unwrap();
    let framed_msg1 = framed(&msg1[..m]);
    for byte in &framed_msg1 {
        assert_eq!(server.feed(std::slice::from_ref(byte)), 1);
    }
    let mut reply = [0u8; 64];
    let (n, outcome) = server.respond(&mut reply).unwrap();
    let ServerOutcome::Accepted(transport) = outcome else { panic!("our server refused snow") };
    assert_eq!(transport.peer_max_record(), 2048);
    let mut payload = [0u8; 64];
    let p = initiator.read_message(&reply[2..n], &mut payload).unwrap();
    assert_eq!(payload[..p], 4096u16.to_le_bytes());
    let mut snow = initiator.into_transport_mode().unwrap();
    let (mut sealer, mut opener) = transport.split();
    exchange_records(&mut sealer, &mut opener, &mut snow);
}

#[test]
fn snow_writes_protocol_mds_message_1() {
    let prologue = prologue();
    let mut initiator = snow_builder(&prologue, &CLIENT_E).build_initiator().unwrap();
    let mut msg1 = [0u8; 64];
    let m = initiator.write_message(&1024u16.to_le_bytes(), &mut msg1).unwrap();
    assert_eq!(msg1[..m], hex(EXAMPLE_MSG1)[..]);
}

#[test]
fn a_snow_initiator_with_another_key_is_refused() {
    let prologue = prologue();
    let other = [0x77u8; 32];
    let mut initiator = snow::Builder::new(PARAMS.parse().unwrap())
        .psk(0, &other)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut msg1 = [0u8; 64];
    let m = initiator.write_message(&1024u16.to_le_bytes(), &mut msg1).unwrap();
    let mut server =
        ServerHandshake::new(Hello { user_id: USER }, Some(&PSK), 4096, &mut FixedRng(SERVER_E)).unwrap();
    server.feed(&framed(&msg1[..m]));
    let mut reply = [0u8; 64];
    let (n, outcome) = server.respond(&mut reply).unwrap();
    assert!(matches!(outcome, ServerOutcome::Refused));
    assert_eq!(&reply[..n], b"\x03\xeb\x03\x00\x00\x15\x00\x00\x00authentication failed");
}
