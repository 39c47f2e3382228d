//! TLS 1.3's record protection keeping only the raw keys.
//!
//! ring's AEAD key for AES-GCM is the expanded AES key schedule and the GHASH table, about
//! 560 bytes (boxed, in the 640-byte class), and a TLS connection holds two of them (one each
//! way) for its whole life: with them a held TLS session cost 7.14 KiB, without 5.98 (a TCP one
//! 3.44). These suites are ring's own TLS 1.3
//! suites with one difference: each direction keeps its 16 or 32 key bytes and expands them for
//! each record it seals or opens (a few hundred nanoseconds, against the microseconds a record
//! costs in system calls). The key bytes are wiped when the connection ends, as rustls does.

use std::sync::OnceLock;

use ring::aead;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    NONCE_LEN, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload,
    Tls13AeadAlgorithm, UnsupportedOperationError, make_tls13_aad,
};
use tokio_rustls::rustls::{
    CipherSuite, CipherSuiteCommon, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion,
    SupportedCipherSuite, Tls13CipherSuite,
};
use zeroize::Zeroize;

/// `provider` with each TLS 1.3 suite it offers replaced by the same suite keeping only raw keys
/// (TLS 1.2 suites are kept as they are: few clients still speak it).
pub fn compact(mut provider: CryptoProvider) -> CryptoProvider {
    for suite in &mut provider.cipher_suites {
        if let SupportedCipherSuite::Tls13(tls13) = suite
            && let Some(compact) = compact_suite(tls13)
        {
            *suite = SupportedCipherSuite::Tls13(compact);
        }
    }
    provider
}

/// The compact form of one of ring's TLS 1.3 suites, made once per process.
fn compact_suite(suite: &'static Tls13CipherSuite) -> Option<&'static Tls13CipherSuite> {
    static MADE: [OnceLock<Tls13CipherSuite>; 3] = [const { OnceLock::new() }; 3];
    let (made, keys): (_, &'static RawKeys) = match suite.common.suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => (&MADE[0], &AES_128_GCM),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => (&MADE[1], &AES_256_GCM),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => (&MADE[2], &CHACHA20_POLY1305),
        _ => return None,
    };
    Some(made.get_or_init(|| Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: suite.common.suite,
            hash_provider: suite.common.hash_provider,
            confidentiality_limit: suite.common.confidentiality_limit,
        },
        hkdf_provider: suite.hkdf_provider,
        aead_alg: keys,
        quic: suite.quic,
    }))
}

/// A TLS 1.3 AEAD that keeps raw keys.
struct RawKeys {
    aead: Aead,
    secrets: fn(AeadKey, Iv) -> ConnectionTrafficSecrets,
}

static AES_128_GCM: RawKeys = RawKeys {
    aead: Aead::Aes128Gcm,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes128Gcm { key, iv },
};
static AES_256_GCM: RawKeys = RawKeys {
    aead: Aead::Aes256Gcm,
    secrets: |key, iv| ConnectionTrafficSecrets::Aes256Gcm { key, iv },
};
static CHACHA20_POLY1305: RawKeys = RawKeys {
    aead: Aead::Chacha20Poly1305,
    secrets: |key, iv| ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv },
};

impl Tls13AeadAlgorithm for RawKeys {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Direction::new(self.aead, key.as_ref(), iv))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Direction::new(self.aead, key.as_ref(), iv))
    }

    fn key_len(&self) -> usize {
        self.aead.algorithm().key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        Ok((self.secrets)(key, iv))
    }
}

/// The AEAD of a TLS 1.3 suite, in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Aead {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &aead::AES_128_GCM,
            Aead::Aes256Gcm => &aead::AES_256_GCM,
            Aead::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// The longest key of the suites (AES-256 and ChaCha20).
const MAX_KEY: usize = 32;

/// One direction's key: raw, expanded for each record; its bytes are wiped when it is dropped.
/// Byte arrays and a one-byte suite, so that a TLS socket's two directions fit in its box's
/// size class.
pub(super) struct Direction {
    aead: Aead,
    key: [u8; MAX_KEY],
    iv: [u8; NONCE_LEN],
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl Direction {
    /// `key` (as long as `aead` wants, at most [`MAX_KEY`] bytes) and `iv`.
    fn new(aead: Aead, key: &[u8], iv: Iv) -> Direction {
        let mut direction = Direction {
            aead,
            key: [0; MAX_KEY],
            iv: [0; NONCE_LEN],
        };
        let len = key.len().min(MAX_KEY);
        direction.key[..len].copy_from_slice(&key[..len]);
        direction.iv.copy_from_slice(iv.as_ref());
        direction
    }

    /// The key of a TLS 1.3 suite's traffic secrets, as rustls hands them over; `None` for a
    /// suite this module does not know.
    pub(super) fn from_secrets(secrets: ConnectionTrafficSecrets) -> Option<Direction> {
        let (aead, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Aead::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Aead::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Aead::Chacha20Poly1305, key, iv)
            }
            _ => return None,
        };
        (key.as_ref().len() == aead.algorithm().key_len())
            .then(|| Direction::new(aead, key.as_ref(), iv))
    }

    /// The bytes of authentication tag a sealed record ends with.
    pub(super) fn tag_len(&self) -> usize {
        self.aead.algorithm().tag_len()
    }

    /// Seals `payload` in place as record `seq` with `header` as its additional data, and
    /// returns its tag.
    pub(super) fn seal(&self, seq: u64, header: [u8; 5], payload: &mut [u8]) -> Option<aead::Tag> {
        self.expanded()
            .ok()?
            .seal_in_place_separate_tag(self.nonce(seq), aead::Aad::from(header), payload)
            .ok()
    }

    /// The key expanded for a run of records to open (one read's worth): a client that sends
    /// each small message in its own record pays for the expansion once per read, not once per
    /// record. It lives on the stack for the run only.
    pub(super) fn opener(&self) -> Option<Opener> {
        Some(Opener {
            key: self.expanded().ok()?,
            iv: Iv::new(self.iv),
        })
    }

    fn expanded(&self) -> Result<aead::LessSafeKey, Error> {
        let algorithm = self.aead.algorithm();
        aead::UnboundKey::new(algorithm, &self.key[..algorithm.key_len()])
            .map(aead::LessSafeKey::new)
            .map_err(|_| Error::General("a TLS record key of the wrong length".into()))
    }

    /// The IV with the record's sequence number in it (RFC 8446, 5.3).
    fn nonce(&self, seq: u64) -> aead::Nonce {
        nonce(&Iv::new(self.iv), seq)
    }
}

/// The IV with the record's sequence number in it (RFC 8446, 5.3).
fn nonce(iv: &Iv, seq: u64) -> aead::Nonce {
    aead::Nonce::assume_unique_for_key(Nonce::new(iv, seq).0)
}

/// One direction's key, expanded for a run of records ([`Direction::opener`]).
pub(super) struct Opener {
    key: aead::LessSafeKey,
    iv: Iv,
}

impl Opener {
    /// Opens `payload` (ciphertext and tag) in place as record `seq` with `header` as its
    /// additional data: the plaintext, or `None` when it is not authentic.
    pub(super) fn open<'a>(
        &self,
        seq: u64,
        header: [u8; 5],
        payload: &'a mut [u8],
    ) -> Option<&'a mut [u8]> {
        self.key
            .open_in_place(nonce(&self.iv, seq), aead::Aad::from(header), payload)
            .ok()
    }
}

impl MessageEncrypter for Direction {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total);
        payload.extend_from_chunks(&msg.payload);
        // The inner content type ends the plaintext (RFC 8446, 5.2).
        payload.extend_from_slice(&msg.typ.to_array());
        self.expanded()?
            .seal_in_place_append_tag(
                self.nonce(seq),
                aead::Aad::from(make_tls13_aad(total)),
                &mut payload,
            )
            .map_err(|_| Error::EncryptError)?;
        // Every TLS 1.3 record says 1.2 on the outside (RFC 8446, 5.1).
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + self.tag_len()
    }
}

impl MessageDecrypter for Direction {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        if payload.len() < self.tag_len() {
            return Err(Error::DecryptError);
        }
        let aad = aead::Aad::from(make_tls13_aad(payload.len()));
        let plain = self
            .expanded()?
            .open_in_place(self.nonce(seq), aad, payload)
            .map_err(|_| Error::DecryptError)?
            .len();
        payload.truncate(plain);
        msg.into_tls13_unpadded_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tls_1_3_suite_keeps_raw_keys_and_tls_1_2_is_untouched() {
        let ring = tokio_rustls::rustls::crypto::ring::default_provider();
        let compact = compact(ring.clone());
        assert_eq!(compact.cipher_suites.len(), ring.cipher_suites.len());
        let mut tls13 = 0;
        for (ours, theirs) in compact.cipher_suites.iter().zip(&ring.cipher_suites) {
            assert_eq!(ours.suite(), theirs.suite());
            match (ours, theirs) {
                (SupportedCipherSuite::Tls13(ours), SupportedCipherSuite::Tls13(theirs)) => {
                    tls13 += 1;
                    let raw: Vec<*const ()> = [&AES_128_GCM, &AES_256_GCM, &CHACHA20_POLY1305]
                        .iter()
                        .map(|keys| std::ptr::from_ref::<RawKeys>(keys).cast())
                        .collect();
                    let alg = std::ptr::from_ref(ours.aead_alg).cast::<()>();
                    assert!(
                        raw.contains(&alg),
                        "{:?} keeps ring's keys",
                        ours.common.suite
                    );
                    assert_eq!(ours.aead_alg.key_len(), theirs.aead_alg.key_len());
                }
                (SupportedCipherSuite::Tls12(ours), SupportedCipherSuite::Tls12(theirs)) => {
                    assert!(std::ptr::eq(*ours, *theirs));
                }
                _ => panic!("a suite changed its version"),
            }
        }
        assert_eq!(tls13, 3);
    }

    #[test]
    fn a_direction_holds_its_raw_key_only() {
        // ring's expanded AES-GCM key alone is over 500 bytes.
        assert!(std::mem::size_of::<Direction>() <= 48);
    }
}
