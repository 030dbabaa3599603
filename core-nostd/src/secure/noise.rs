//! The one Noise pattern this protocol uses, built from `clatter`, with its
//! types kept inside the crate.

use clatter::bytearray::ByteArray;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Sha256;
use clatter::handshakepattern::noise_nn_psk0;
use clatter::traits::{Dh, Handshaker};
use clatter::{KeyPair, NqHandshakeCore};
use rand_core::{CryptoRng, RngCore};

use super::{DH_LEN, HandshakeError, Hello, KEY_LEN};

/// One direction's transport cipher (key and nonce counter).
pub(crate) type Cipher = clatter::cipherstate::CipherState<ChaChaPoly>;

/// `Noise_NNpsk0_25519_ChaChaPoly_SHA256` with the RNG slot unused.
pub(crate) type Noise = NqHandshakeCore<X25519, ChaChaPoly, Sha256, NoRng>;

/// Stands in for clatter's RNG slot, which must be `Default` and so cannot
/// be the caller's RNG. It is never asked: clatter draws only for the `e`
/// token, and every handshake here is given its ephemeral key up front,
/// drawn from the caller's RNG. Should that ever change, it yields zeros and
/// the fixed-key tests (which compare `e` with the caller's bytes) fail.
#[derive(Debug, Default, Clone)]
pub(crate) struct NoRng;

impl RngCore for NoRng {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(0);
        Ok(())
    }
}

impl CryptoRng for NoRng {}

/// A handshake state for `hello`'s session under `psk`, with an ephemeral key
/// drawn from `rng` now.
pub(crate) fn start<R: RngCore + CryptoRng>(
    initiator: bool,
    hello: Hello,
    psk: &[u8; KEY_LEN],
    rng: &mut R,
) -> Result<Noise, HandshakeError> {
    start_with_prologue(initiator, &hello.prologue(), psk, rng)
}

/// The same with any prologue: the official test vectors have their own.
pub(crate) fn start_with_prologue<R: RngCore + CryptoRng>(
    initiator: bool,
    prologue: &[u8],
    psk: &[u8; KEY_LEN],
    rng: &mut R,
) -> Result<Noise, HandshakeError> {
    let mut secret = <X25519 as Dh>::PrivateKey::new_zero();
    rng.fill_bytes(secret.as_mut());
    let public = <X25519 as Dh>::pubkey(&secret);
    let e = KeyPair::new(public, secret);
    let mut noise = Noise::new(noise_nn_psk0(), prologue, initiator, None, Some(e), None, None)
        .map_err(|_| HandshakeError::Noise)?;
    noise.push_psk(psk);
    Ok(noise)
}

/// Splits a finished handshake into (sending, receiving) ciphers.
pub(crate) fn split(noise: Noise) -> Result<(Cipher, Cipher), HandshakeError> {
    let initiator = noise.is_initiator();
    let states = noise.finalize().map_err(|_| HandshakeError::NotComplete)?.take();
    Ok(if initiator {
        (states.initiator_to_responder, states.responder_to_initiator)
    } else {
        (states.responder_to_initiator, states.initiator_to_responder)
    })
}

// The message lengths in `super` are what clatter computes for this pattern.
const _: () = assert!(DH_LEN == 32);
