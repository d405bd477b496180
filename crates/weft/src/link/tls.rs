//! Optional mutual TLS under the link handshake.
//!
//! Both directions present a certificate signed by the cluster CA; the
//! dialer checks the acceptor's certificate against `server_name`, the
//! acceptor requires and checks the dialer's. The HMAC handshake still runs
//! inside TLS, so the secret check holds either way. The crypto provider
//! is `ring`, chosen explicitly (see DEPENDENCIES.md).

use std::io::BufReader;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsConfig;
use crate::error::ConfigError;
use crate::net::BoxStream;

/// Ready-made TLS contexts for both directions.
#[derive(Clone)]
pub struct TlsContext {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
    server_name: ServerName<'static>,
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::Tls(format!("{}: {e}", path.display())))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(file)).collect();
    let certs = certs.map_err(|e| ConfigError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| ConfigError::Tls(format!("{}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| ConfigError::Tls(format!("{}: {e}", path.display())))?
        .ok_or_else(|| ConfigError::Tls(format!("{}: no private key found", path.display())))
}

impl TlsContext {
    /// Loads certificates and builds both configurations.
    pub fn load(cfg: &TlsConfig) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&cfg.ca)? {
            roots
                .add(ca)
                .map_err(|e| ConfigError::Tls(format!("{}: {e}", cfg.ca.display())))?;
        }
        let roots = Arc::new(roots);
        let certs = read_certs(&cfg.cert)?;
        let key = read_key(&cfg.key)?;

        let tls_err = |e: rustls::Error| ConfigError::Tls(e.to_string());
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(tls_err)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| ConfigError::Tls(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(tls_err)?;
        let server_name = ServerName::try_from(cfg.server_name.clone())
            .map_err(|e| ConfigError::Tls(format!("server_name {:?}: {e}", cfg.server_name)))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            server_name,
        })
    }

    /// Runs the client side of TLS over `stream`.
    pub async fn connect(&self, stream: BoxStream) -> std::io::Result<BoxStream> {
        let s = self.connector.connect(self.server_name.clone(), stream).await?;
        Ok(Box::new(s))
    }

    /// Runs the server side of TLS over `stream`.
    pub async fn accept(&self, stream: BoxStream) -> std::io::Result<BoxStream> {
        let s = self.acceptor.accept(stream).await?;
        Ok(Box::new(s))
    }
}
