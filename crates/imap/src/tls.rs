//! TLS client configuration: the public web PKI plus any CA the operator adds
//! (`MAILFLEET_EXTRA_CA_FILE`), or — only for an account that allows a non-secure
//! certificate — no verification of the certificate chain (signatures still checked).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// The trust anchors a deployment verifies servers against. Cheap to clone.
#[derive(Clone)]
pub struct TlsTrust {
    verified: Arc<ClientConfig>,
    insecure: Arc<ClientConfig>,
    /// The operator's extra CAs as PEM, for clients that build their own TLS config (lettre).
    extra_ca_pem: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTrust")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

impl TlsTrust {
    /// Web PKI roots plus the PEM certificates in `extra_ca_pem`.
    pub fn new(extra_ca_pem: Option<(&str, &[u8])>) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some((path, pem)) = extra_ca_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsSetupError::CaFile {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| TlsSetupError::CaFile {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(TlsSetupError::CaFile {
                    path: path.into(),
                    reason: "no PEM certificate in it".into(),
                });
            }
        }
        let verified = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let insecure = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Self {
            verified: Arc::new(verified),
            insecure: Arc::new(insecure),
            extra_ca_pem: extra_ca_pem.map(|(_, pem)| Arc::new(pem.to_vec())),
        })
    }

    pub fn extra_ca_pem(&self) -> Option<&[u8]> {
        self.extra_ca_pem.as_deref().map(Vec::as_slice)
    }

    pub fn config(&self, allow_insecure_cert: bool) -> Arc<ClientConfig> {
        if allow_insecure_cert {
            self.insecure.clone()
        } else {
            self.verified.clone()
        }
    }
}

/// Accepts any certificate chain; handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
