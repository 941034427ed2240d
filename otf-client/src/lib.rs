//! `otf-client` is what every HTTP client of otfd shares, so that
//! `otf-agent`, `otf-tui` and an embedding Rust program agree: which URL an
//! address means ([`base_url`]), which certificates are trusted
//! ([`http_client`]: the system's, `SSL_CERT_FILE`/`SSL_CERT_DIR`, and an
//! extra PEM CA), and what an error answer says ([`error_detail`],
//! [`error_chain`]). It speaks no endpoint itself and must not depend on any
//! other otf crate.

#![forbid(unsafe_code)]

use std::time::Duration;

/// Where a client looks for otfd unless told: otfd's default listening
/// address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

/// The server URL for an address: a URL as given (without a trailing
/// slash), or `host[:port]`, which means HTTPS, except plain HTTP for
/// loopback hosts (where otfd's default listener is).
pub fn base_url(address: &str) -> String {
    let a = address.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        return a.to_string();
    }
    let host = match a.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => a,
    };
    let loopback = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    format!("{}://{a}", if loopback { "http" } else { "https" })
}

/// Why an HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the CA certificate is not usable PEM: {0}")]
    CaCert(#[source] reqwest::Error),
    #[error("the CA certificate file holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCaCert,
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// An HTTP client of otfd: `user_agent`, a 10 s connect timeout, `timeout`
/// per request, the system's roots plus the certificates of `ca_cert` (PEM,
/// one or a bundle) when given; a file with none is an error, not ignored.
pub fn http_client(
    user_agent: &str,
    timeout: Duration,
    ca_cert: Option<&[u8]>,
) -> Result<reqwest::Client, SetupError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout);
    if let Some(pem) = ca_cert {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(SetupError::CaCert)?;
        if certs.is_empty() {
            return Err(SetupError::NoCaCert);
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(SetupError::Build)
}

/// The first error's `detail` (else its `title`) of a JSON:API error
/// document; `None` for anything else.
pub fn error_detail(body: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = doc.get("errors")?.get(0)?;
    e.get("detail")
        .or_else(|| e.get("title"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// An error with its causes, `a: b: c` (reqwest says what went wrong in
/// the causes).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(base_url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(base_url("localhost:8080/"), "http://localhost:8080");
        assert_eq!(base_url("localhost"), "http://localhost");
        assert_eq!(base_url("[::1]:8080"), "http://[::1]:8080");
        assert_eq!(base_url("otf.example.com"), "https://otf.example.com");
        assert_eq!(
            base_url("otf.example.com:8443"),
            "https://otf.example.com:8443"
        );
        assert_eq!(base_url("https://127.0.0.1:8443"), "https://127.0.0.1:8443");
        assert_eq!(base_url(" http://otf:80/ "), "http://otf:80");
    }

    #[test]
    fn error_details() {
        let text = r#"{"errors":[{"status":"422","title":"invalid","detail":"not granted"}]}"#;
        assert_eq!(error_detail(text).as_deref(), Some("not granted"));
        let text = r#"{"errors":[{"status":"404","title":"not found"}]}"#;
        assert_eq!(error_detail(text).as_deref(), Some("not found"));
        assert_eq!(error_detail("<html>"), None);
        assert_eq!(error_detail(r#"{"data":{}}"#), None);
    }

    #[test]
    fn a_bad_ca_certificate_is_a_setup_error() {
        let err = http_client("t", Duration::from_secs(1), Some(b"not pem")).expect_err("refused");
        assert!(err.to_string().contains("CA certificate"), "{err}");
        assert!(http_client("t", Duration::from_secs(1), None).is_ok());
    }
}
