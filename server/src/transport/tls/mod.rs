//! TLS on the game port and the WebSocket listener, with rustls.
//!
//! The certificate and key come from `tls.cert_file` and `tls.key_file`. The rustls
//! configuration is built once; its certificate resolver hands out the current pair, so that a
//! reload (SIGHUP) swaps the pair for new handshakes without touching sessions already open. A
//! pair that fails to load is reported and the old one kept.
//!
//! The handshake runs in the session's own task, within `session.handshake_timeout` from the
//! accept; one that fails or stalls is a rejection (`tls_handshake`), not a session: nothing of
//! the protocol was spoken. After it, the session reads and writes through [`TlsSocket`], which
//! holds no record buffer while the session is quiet.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
#[cfg(feature = "app")]
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, UnbufferedServerConnection};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TlsConfig;
use crate::memory::budget::Budget;
#[cfg(feature = "app")]
use crate::transport::labels::ReloadResult;

mod keys;
mod records;
mod socket;

#[cfg(doc)]
use socket::MAX_HANDSHAKE_BYTES;
pub use socket::TlsSocket;

/// How long a reload may take to read the certificate and key before the old pair is kept.
#[cfg(feature = "app")]
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(5);

/// A certificate pair that cannot be used; each names the key whose file is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{key}: cannot read {path}: {error}")]
    Read {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A file holds no usable PEM item of the kind the key wants.
    #[error("{key}: {path}: {problem}")]
    Content {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// The server's TLS: the acceptor every handshake uses and the files it reloads from.
// Without the app nothing reloads the pair (SIGHUP is the app's): the files stay unread.
#[cfg_attr(not(feature = "app"), allow(dead_code))]
pub struct Tls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
    provider: Arc<CryptoProvider>,
    cert_file: PathBuf,
    key_file: PathBuf,
    /// A reload's blocking read is under way (it may outlive its deadline).
    reading: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The pair new handshakes get.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a whole pair: a writer only ever replaces the Arc.
        let pair = match self.0.read() {
            Ok(pair) => pair,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(pair.clone())
    }
}

/// What the engine changes from rustls's defaults in every server configuration: no TLS 1.3
/// session tickets. rustls would send two after every handshake and keep their sessions in a
/// cache of 256 for the whole server, which at thousands of players holds only the latest few;
/// and the queue the tickets go through keeps its slots for the connection's life (96 bytes per
/// held session). A player who reconnects (the game's own resume) does a full handshake: the
/// same one round trip, one signature more for the server.
///
/// And the traffic secrets may be handed over: after a TLS 1.3 handshake the socket keeps the
/// record layer itself (see `records`), which holds a fraction of what rustls's connection
/// would.
pub(crate) fn settle(config: &mut ServerConfig) {
    config.send_tls13_tickets = 0;
    config.enable_secret_extraction = true;
}

impl Tls {
    /// Loads the pair the configuration names; `None` when TLS is off. Every problem with the
    /// two files is reported at once.
    pub fn from_config(config: &TlsConfig) -> Result<Option<Tls>, Vec<TlsError>> {
        if !config.enabled() {
            return Ok(None);
        }
        let provider = Arc::new(keys::compact(rustls::crypto::ring::default_provider()));
        let cert_file = PathBuf::from(&config.cert_file);
        let key_file = PathBuf::from(&config.key_file);
        let pair = load(&provider, &cert_file, &key_file)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(pair))));
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| {
                vec![TlsError::Content {
                    key: "tls.cert_file",
                    path: cert_file.clone(),
                    problem: error.to_string(),
                }]
            })?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        settle(&mut server);
        Ok(Some(Tls {
            config: Arc::new(server),
            current,
            provider,
            cert_file,
            key_file,
            reading: Arc::default(),
        }))
    }

    /// Reads both files again, off the runtime and within [`RELOAD_DEADLINE`], and if they make
    /// a good pair, gives it to new handshakes. Whatever goes wrong keeps the old pair: the
    /// server goes on serving while the files are read, however slow or strange they are.
    #[cfg(feature = "app")]
    pub async fn reload(&self) -> Result<(), Vec<TlsError>> {
        let (provider, cert_file, key_file) = (
            self.provider.clone(),
            self.cert_file.clone(),
            self.key_file.clone(),
        );
        if self.reading.swap(true, std::sync::atomic::Ordering::AcqRel) {
            // An earlier read is still stuck in its file: another thread would only join it.
            return Err(vec![TlsError::Read {
                key: "tls.cert_file",
                path: self.cert_file.clone(),
                error: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "an earlier reload is still reading the pair; kept the old one",
                ),
            }]);
        }
        let reading_flag = self.reading.clone();
        let reading = tokio::task::spawn_blocking(move || {
            let loaded = load(&provider, &cert_file, &key_file);
            reading_flag.store(false, std::sync::atomic::Ordering::Release);
            loaded
        });
        let pair = match tokio::time::timeout(RELOAD_DEADLINE, reading).await {
            Ok(Ok(loaded)) => loaded?,
            Ok(Err(error)) => {
                return Err(vec![TlsError::Read {
                    key: "tls.cert_file",
                    path: self.cert_file.clone(),
                    error: io::Error::other(format!("the reading task failed: {error}")),
                }]);
            }
            Err(_) => {
                // The blocking read goes on in its thread until the file answers; the server
                // does not wait for it, and the next SIGHUP starts a fresh read.
                return Err(vec![TlsError::Read {
                    key: "tls.cert_file",
                    path: self.cert_file.clone(),
                    error: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the pair (tls.cert_file, tls.key_file) was not read within {}s",
                            RELOAD_DEADLINE.as_secs()
                        ),
                    ),
                }]);
            }
        };
        let mut current = match self.current.0.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(pair);
        Ok(())
    }

    /// The server side of a TLS handshake on `stream`, until `deadline`. What the client sends
    /// during the handshake is capped at [`MAX_HANDSHAKE_BYTES`] and charged to `budget` as it
    /// arrives (it is held until the handshake is done).
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        deadline: Instant,
        budget: &Arc<Budget>,
    ) -> Result<TlsSocket, HandshakeFailure> {
        let tls = UnbufferedServerConnection::new(self.config.clone())
            .map_err(|error| HandshakeFailure::Failed(io::Error::other(error)))?;
        let handshake = TlsSocket::handshake(stream, tls, budget.charge(0));
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(socket)) => Ok(socket),
            Ok(Err(error)) => Err(HandshakeFailure::Failed(error)),
            Err(_) => Err(HandshakeFailure::TimedOut),
        }
    }
}

/// Why a connection never got through its TLS handshake.
#[derive(Debug)]
pub(crate) enum HandshakeFailure {
    /// The client sent something that is not a TLS handshake we accept, or went away.
    Failed(io::Error),
    /// Not complete within `session.handshake_timeout`.
    TimedOut,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Failed(error) => write!(f, "{error}"),
            HandshakeFailure::TimedOut => {
                f.write_str("no complete TLS handshake within session.handshake_timeout")
            }
        }
    }
}

/// Reads a certificate chain and its key and checks that they belong together.
fn load(
    provider: &CryptoProvider,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, Vec<TlsError>> {
    let chain = read_chain(cert_file);
    let key = read_key(provider, key_file);
    let (chain, key) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (chain, key) => {
            return Err([chain.err(), key.err()].into_iter().flatten().collect());
        }
    };
    let pair = CertifiedKey::new(chain, key);
    pair.keys_match().map_err(|error| {
        vec![TlsError::Content {
            key: "tls.key_file",
            path: key_file.to_owned(),
            problem: format!("not the key of the certificate in tls.cert_file ({error})"),
        }]
    })?;
    Ok(pair)
}

/// The largest certificate or key file read: a chain of a dozen certificates is a few tens of
/// KiB; anything near this is not a PEM file someone meant.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a PEM file without ever blocking on what is not a regular file: it is opened
/// non-blocking (a FIFO without a writer would otherwise hold the open), must be a regular file
/// of at most [`MAX_PEM_BYTES`], and is read no further than that.
fn read_bounded(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |error: io::Error| TlsError::Read {
        key,
        path: path.to_owned(),
        error,
    };
    let content = |problem: String| TlsError::Content {
        key,
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(failed)?;
    let metadata = file.metadata().map_err(failed)?;
    if !metadata.is_file() {
        return Err(content(format!(
            "not a regular file ({}); a certificate or key must be a file",
            file_kind(&metadata)
        )));
    }
    if metadata.len() > MAX_PEM_BYTES {
        return Err(content(format!(
            "{} bytes; a PEM file here is at most {MAX_PEM_BYTES}",
            metadata.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(content(format!(
            "grew past {MAX_PEM_BYTES} bytes while it was read"
        )));
    }
    Ok(bytes)
}

/// What a path that is not a regular file is, for the error.
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const KEY: &str = "tls.cert_file";
    let bytes = read_bounded(KEY, path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Content {
            key: KEY,
            path: path.to_owned(),
            problem: format!("not a PEM certificate chain ({error})"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Content {
            key: KEY,
            path: path.to_owned(),
            problem: "no \"BEGIN CERTIFICATE\" block in it".into(),
        });
    }
    Ok(chain)
}

fn read_key(
    provider: &CryptoProvider,
    path: &Path,
) -> Result<Arc<dyn rustls::sign::SigningKey>, TlsError> {
    const KEY: &str = "tls.key_file";
    let bytes = read_bounded(KEY, path)?;
    let content = |problem: String| TlsError::Content {
        key: KEY,
        path: path.to_owned(),
        problem,
    };
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        content(format!(
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({error})"
        ))
    })?;
    provider
        .key_provider
        .load_private_key(der)
        .map_err(|error| content(format!("the key cannot be used: {error}")))
}

/// Reloads the pair on every SIGHUP until the task is dropped. Without TLS a SIGHUP is only
/// logged (its default action would end the process).
#[cfg(feature = "app")]
pub(crate) async fn reload_on_hangup(
    tls: Option<Arc<Tls>>,
    metrics: crate::transport::metrics::TransportMetrics,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP: certificates cannot be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let Some(tls) = tls.as_ref() else {
            tracing::info!("SIGHUP: nothing to reload (no [tls] configured)");
            continue;
        };
        match tls.reload().await {
            Ok(()) => {
                metrics.tls_reload(ReloadResult::Ok);
                tracing::info!(
                    cert_file = %tls.cert_file.display(),
                    "SIGHUP: TLS certificate reloaded; new handshakes use it"
                );
            }
            Err(problems) => {
                metrics.tls_reload(ReloadResult::Error);
                for problem in problems {
                    tracing::error!(
                        "SIGHUP: TLS certificate not reloaded, keeping the old one: {problem}"
                    );
                }
            }
        }
    }
}
