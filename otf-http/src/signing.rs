//! Capability URLs: otfd signs a path and an expiry so that clients can use
//! it without a token (configuration uploads by pytfe, log reads by the
//! Terraform CLI). The signature sits in the path, because the CLI replaces
//! the query string of log URLs.
//!
//! Shape: `/_signed/<expiry-unix-seconds>/<hex hmac>/<path>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every signed path.
pub const PREFIX: &str = "/_signed/";

/// Signs and verifies capability paths with a server secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<secret>)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, expiry: i64, path: &str) -> String {
        // A key of any length is accepted by HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(expiry.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The signed form of `path` (which starts with `/`), valid until
    /// `expiry` (unix seconds).
    pub fn sign(&self, path: &str, expiry: i64) -> String {
        format!("{PREFIX}{expiry}/{}{path}", self.mac(expiry, path))
    }

    /// The inner path of a signed path, if its signature is right and it has
    /// not expired at `now` (unix seconds).
    pub fn verify<'a>(&self, signed: &'a str, now: i64) -> Option<&'a str> {
        let rest = signed.strip_prefix(PREFIX)?;
        let (expiry, rest) = rest.split_once('/')?;
        let (sig, _) = rest.split_once('/')?;
        let path = &rest[sig.len()..];
        let expiry: i64 = expiry.parse().ok()?;
        if now > expiry {
            return None;
        }
        let want = self.mac(expiry, path);
        // Constant-time comparison of equal-length hex strings.
        let ok = want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        ok.then_some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let s = Signer::new(b"key");
        let url = s.sign("/runs/run-x/logs/plan", 1000);
        assert!(url.starts_with("/_signed/1000/"));
        assert_eq!(s.verify(&url, 999), Some("/runs/run-x/logs/plan"));
        assert_eq!(s.verify(&url, 1001), None, "expired");
        assert_eq!(Signer::new(b"other").verify(&url, 999), None);
        let tampered = url.replace("run-x", "run-y");
        assert_eq!(s.verify(&tampered, 999), None);
        assert_eq!(s.verify("/_signed/1000/zz", 0), None);
    }
}
