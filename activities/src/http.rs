//! The process-wide HTTP client setup. reqwest is built without a bundled
//! crypto provider so that the whole binary uses one TLS stack (rustls with
//! ring, as the Temporal client does); this installs it once.

use std::sync::Once;

/// Installs rustls' ring provider as the process default (idempotent).
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client with sane timeouts for provider and webhook calls.
pub fn client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(std::time::Duration::from_secs(3))
        .build()
}
