//! Certificates for TLS tests: a self-signed pair for `localhost` and 127.0.0.1, written to a
//! scratch directory, and clients that trust it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::process::ScratchDir;

/// A self-signed certificate and its key, as the PEM files a server's `[tls]` names.
#[derive(Debug)]
pub struct TestCert {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// The certificate, PEM.
    pub pem: String,
    _dir: ScratchDir,
}

impl TestCert {
    /// A new pair (a new key each time) for `localhost` and 127.0.0.1.
    pub fn new(tag: &str) -> TestCert {
        let dir = ScratchDir::new(tag);
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let pem = TestCert::write_new(&cert, &key);
        TestCert {
            cert,
            key,
            pem,
            _dir: dir,
        }
    }

    /// Writes a new pair over `cert` and `key`; returns the certificate's PEM.
    pub fn write_new(cert: &Path, key: &Path) -> String {
        let pair = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("generate a certificate");
        let pem = pair.cert.pem();
        std::fs::write(cert, &pem).expect("write the certificate");
        std::fs::write(key, pair.signing_key.serialize_pem()).expect("write the key");
        pem
    }

    /// The `[tls]` section naming these files.
    pub fn config(&self) -> String {
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            self.cert.display().to_string(),
            self.key.display().to_string()
        )
    }

    /// A client-library TLS setup trusting this certificate only.
    pub fn client(&self) -> game_client::Tls {
        game_client::Tls::trusting(Some(&self.cert), "localhost").expect("a client trusting it")
    }
}

/// A TLS client trusting only the certificate in `pem`.
pub fn connector(pem: &str) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("a PEM certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` and makes a TLS handshake trusting only `pem`.
pub async fn connect(
    addr: std::net::SocketAddr,
    pem: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    connector(pem).connect(name, stream).await
}
