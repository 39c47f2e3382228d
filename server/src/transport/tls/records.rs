//! TLS 1.3's record layer after the handshake, kept by the socket itself.
//!
//! rustls runs the handshake; once it is done, its connection hands over the traffic keys and
//! sequence numbers (`dangerous_into_kernel_connection`, the interface rustls offers for kernel
//! TLS) and what is left of it computes the next traffic secret when a key changes. The rustls
//! connection held about 2.5 KiB for the life of a session (its own 1.1 KB, the handshake's
//! span list, its queues); what it leaves behind holds the secrets and little else.
//!
//! What this layer does is RFC 8446, section 5, with nothing optional: every record is
//! protected (a plaintext record after the handshake, even a `change_cipher_spec`, ends the
//! connection); a record announces at most 2^14 + 256 bytes and opens to at most 2^14 + 1; the
//! inner content type is the last byte that is not zero padding; application data, alerts
//! (`close_notify` is the end of the stream, `user_canceled` is ignored, any other alert is an
//! error) and, among handshake messages, only `KeyUpdate`, which may arrive split across
//! records but must end its record, and is answered with one of ours when the client asks. The
//! server changes its own key before it reaches its suite's confidentiality limit. Key updates
//! and warnings without application data between them are limited as rustls limits them.

use std::io;

use tokio_rustls::rustls::kernel::KernelConnection;
use tokio_rustls::rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use tokio_rustls::rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

use super::keys::Direction;

/// The most plaintext one record carries (RFC 8446, 5.1).
const MAX_PLAIN: usize = 1 << 14;

/// The most a protected record may announce: its plaintext, content type and padding, and tag
/// (RFC 8446, 5.2).
const MAX_PROTECTED: usize = MAX_PLAIN + 256;

/// A record's header: content type, legacy version, length.
const HEADER: usize = 5;

const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// A handshake message's type: the only one a client may send after the handshake.
const KEY_UPDATE: u8 = 24;
/// A `KeyUpdate` whole: type, 24-bit length (1), and whether the peer should update too.
const KEY_UPDATE_LEN: u8 = 5;

const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const WARNING: u8 = 1;

/// Key updates and warning alerts a client may send without application data between them.
const TEMPER: u8 = 32;

/// The record layer of one TLS 1.3 connection whose handshake is done.
pub(super) struct Records {
    /// What rustls keeps after the handshake: the traffic secrets, to compute the next key.
    kernel: Box<KernelConnection<ServerConnectionData>>,
    seal: Direction,
    /// The sequence number of the next record sealed.
    sealed: u64,
    open: Direction,
    /// The sequence number of the next record opened.
    opened: u64,
    /// Bytes of a `KeyUpdate` read so far, when it is split across records.
    key_update: u8,
    /// Key updates and warnings since the client's last application data.
    tempers: u8,
}

/// What [`Records::open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Opened {
    /// Bytes of whole records at the front of the buffer it went through.
    pub used: usize,
    /// The client's `close_notify` came: nothing after it is read.
    pub closed: bool,
}

impl Records {
    /// Takes over from `conn`, whose TLS 1.3 handshake is done and which has nothing left to
    /// send (its configuration allows extracting secrets).
    pub(super) fn new(conn: UnbufferedServerConnection) -> io::Result<Records> {
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(io::Error::other)?;
        let (sealed, seal) = secrets.tx;
        let (opened, open) = secrets.rx;
        Ok(Records {
            kernel: Box::new(kernel),
            seal: direction(seal)?,
            sealed,
            open: direction(open)?,
            opened,
            key_update: 0,
            tempers: 0,
        })
    }

    /// Opens every whole record at the front of `incoming`, in place: application data goes to
    /// `deliver`, a key update's answer to `outgoing`. A partial record is left for more bytes.
    pub(super) fn open(
        &mut self,
        incoming: &mut [u8],
        outgoing: &mut Vec<u8>,
        mut deliver: impl FnMut(&[u8]),
    ) -> io::Result<Opened> {
        let mut used = 0;
        // Expanded at the first whole record, again after a key update.
        let mut opener = None;
        while let Some(header) = incoming.get(used..used + HEADER) {
            let header: [u8; HEADER] = header.try_into().expect("a header's length");
            if header[0] != APPLICATION_DATA || header[1] != 3 {
                return Err(invalid(format!(
                    "an unprotected TLS record (type {}, version {}.{}) after the handshake",
                    header[0], header[1], header[2]
                )));
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len > MAX_PROTECTED {
                return Err(invalid(format!(
                    "a TLS record of {len} bytes, more than {MAX_PROTECTED} (record_overflow)"
                )));
            }
            let Some(payload) = incoming.get_mut(used + HEADER..used + HEADER + len) else {
                break;
            };
            used += HEADER + len;
            let seq = self.opened;
            self.opened = seq
                .checked_add(1)
                .ok_or_else(|| invalid("the TLS record sequence is exhausted".into()))?;
            let key = match &mut opener {
                Some(key) => key,
                None => opener.insert(
                    self.open
                        .opener()
                        .ok_or_else(|| invalid("a TLS record key of the wrong length".into()))?,
                ),
            };
            let inner = key.open(seq, header, payload).ok_or_else(|| {
                invalid("a TLS record that does not authenticate (bad_record_mac)".into())
            })?;
            // The content type is the last byte that is not padding (RFC 8446, 5.2).
            let Some(end) = inner.iter().rposition(|&byte| byte != 0) else {
                return Err(invalid("a TLS record of padding only".into()));
            };
            if end > MAX_PLAIN {
                return Err(invalid(format!(
                    "a TLS record opening to {end} bytes, more than {MAX_PLAIN} (record_overflow)"
                )));
            }
            let (content, typ) = (&inner[..end], inner[end]);
            if self.key_update > 0 && typ != HANDSHAKE {
                return Err(invalid(
                    "a TLS record between the parts of a handshake message".into(),
                ));
            }
            match typ {
                APPLICATION_DATA => {
                    self.tempers = 0;
                    deliver(content);
                }
                ALERT => match *content {
                    [_, CLOSE_NOTIFY] => return Ok(Opened { used, closed: true }),
                    [_, USER_CANCELED] => self.temper()?,
                    [_, description] => {
                        return Err(invalid(format!("the client's TLS alert {description}")));
                    }
                    _ => return Err(invalid("a TLS alert that is not 2 bytes".into())),
                },
                HANDSHAKE => {
                    self.handshake(content, outgoing)?;
                    // The client's key may have changed at this record's end.
                    opener = None;
                }
                other => {
                    return Err(invalid(format!(
                        "a TLS record of content type {other} after the handshake"
                    )));
                }
            }
        }
        Ok(Opened {
            used,
            closed: false,
        })
    }

    /// Seals `data` as application data to `outgoing`, in records of at most 16 KiB.
    pub(super) fn seal(&mut self, data: &[u8], outgoing: &mut Vec<u8>) -> io::Result<()> {
        let records = data.len().div_ceil(MAX_PLAIN);
        outgoing.reserve(data.len() + records * (HEADER + 1 + self.seal.tag_len()));
        for chunk in data.chunks(MAX_PLAIN) {
            self.seal_record(APPLICATION_DATA, chunk, outgoing)?;
        }
        Ok(())
    }

    /// Seals our `close_notify` to `outgoing`.
    pub(super) fn close_notify(&mut self, outgoing: &mut Vec<u8>) -> io::Result<()> {
        self.seal_record(ALERT, &[WARNING, CLOSE_NOTIFY], outgoing)
    }

    /// Sends a `KeyUpdate` (not asking the client for one) under the current key and seals with
    /// the next key from then on.
    pub(super) fn update_sealing(&mut self, outgoing: &mut Vec<u8>) -> io::Result<()> {
        self.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], outgoing)?;
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(io::Error::other)?;
        self.seal = direction(secrets)?;
        self.sealed = seq;
        Ok(())
    }

    /// The client's handshake bytes, one record's worth: parts of `KeyUpdate`s, checked as
    /// they come.
    fn handshake(&mut self, content: &[u8], outgoing: &mut Vec<u8>) -> io::Result<()> {
        if content.is_empty() {
            return Err(invalid("an empty TLS handshake record".into()));
        }
        for (at, &byte) in content.iter().enumerate() {
            self.key_update += 1;
            match (self.key_update, byte) {
                (1, KEY_UPDATE) | (2..=3, 0) | (4, 1) => {}
                (1, other) => {
                    return Err(invalid(format!(
                        "a TLS handshake message of type {other} after the handshake"
                    )));
                }
                (KEY_UPDATE_LEN, request) => {
                    self.key_update = 0;
                    // A key changes at a record's end (RFC 8446, 5.1).
                    if at + 1 != content.len() {
                        return Err(invalid("a TLS key update before its record's end".into()));
                    }
                    self.client_updated(request, outgoing)?;
                }
                _ => return Err(invalid("a TLS key update of the wrong length".into())),
            }
        }
        Ok(())
    }

    /// The client's `KeyUpdate` is whole: its next record comes under its next key, and ours
    /// too when it asks.
    fn client_updated(&mut self, request: u8, outgoing: &mut Vec<u8>) -> io::Result<()> {
        self.temper()?;
        let requested = match request {
            0 => false,
            1 => true,
            other => return Err(invalid(format!("a TLS key update request of {other}"))),
        };
        let (seq, secrets) = self.kernel.update_rx_secret().map_err(io::Error::other)?;
        self.open = direction(secrets)?;
        self.opened = seq;
        if requested {
            self.update_sealing(outgoing)?;
        }
        Ok(())
    }

    /// One more key update or warning without application data.
    fn temper(&mut self) -> io::Result<()> {
        self.tempers += 1;
        if self.tempers > TEMPER {
            return Err(invalid(format!(
                "more than {TEMPER} TLS key updates and warnings without data"
            )));
        }
        Ok(())
    }

    /// Seals one record of content type `typ` to `outgoing`, first changing keys if the
    /// current one is at its suite's limit.
    fn seal_record(&mut self, typ: u8, content: &[u8], outgoing: &mut Vec<u8>) -> io::Result<()> {
        if typ != HANDSHAKE && self.sealed + 1 >= self.confidentiality_limit() {
            self.update_sealing(outgoing)?;
        }
        let len = content.len() + 1 + self.seal.tag_len();
        let [high, low] = u16::try_from(len)
            .map_err(|_| io::Error::other("a TLS record too long to seal"))?
            .to_be_bytes();
        // Every TLS 1.3 record says application data and TLS 1.2 on the outside (RFC 8446, 5.2).
        let header = [APPLICATION_DATA, 3, 3, high, low];
        let start = outgoing.len();
        outgoing.extend_from_slice(&header);
        outgoing.extend_from_slice(content);
        outgoing.push(typ);
        let seq = self.sealed;
        self.sealed += 1;
        let Some(tag) = self.seal.seal(seq, header, &mut outgoing[start + HEADER..]) else {
            outgoing.truncate(start);
            return Err(io::Error::other("a TLS record could not be sealed"));
        };
        outgoing.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// How many records one key may seal.
    fn confidentiality_limit(&self) -> u64 {
        match self.kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
            // Not reached: only a TLS 1.3 connection is handed over.
            _ => u64::MAX,
        }
    }
}

/// A direction's key from the secrets rustls hands over.
fn direction(secrets: ConnectionTrafficSecrets) -> io::Result<Direction> {
    Direction::from_secrets(secrets)
        .ok_or_else(|| io::Error::other("TLS traffic secrets of an unknown suite"))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
