//! Bearer secrets: generation (256 bits), hashing (only hashes are stored),
//! constant-time checks, and the token wire format `<id>.<secret>`.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::random::Random;

/// Bytes of entropy in every secret we issue.
pub const SECRET_BYTES: usize = 32;

/// The SHA-256 of a secret; what the store keeps.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `secret` hashes to this value, in constant time.
    pub fn verify(&self, secret: &str) -> bool {
        let other = Self::of(secret);
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hashes are not secrets, but there is no reason to print them whole.
        write!(f, "SecretHash({}..)", &self.to_hex()[..8])
    }
}

/// A freshly issued secret. It is shown once; its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedSecret(String);

impl IssuedSecret {
    /// A bearer token `<id>.<64 hex chars>` with 256 bits of entropy.
    pub fn generate(id: &str, rng: &dyn Random) -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rng.fill(&mut bytes);
        Self(format!("{id}.{}", hex::encode(bytes)))
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }

    /// The token to hand to the user, once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IssuedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedSecret(<redacted>)")
    }
}

/// The identifier part of a `<id>.<secret>` token, if it has that shape.
pub fn token_id_part(token: &str) -> Option<&str> {
    let (id, secret) = token.split_once('.')?;
    (!id.is_empty() && secret.len() == SECRET_BYTES * 2).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn issued_secret_has_256_bits_and_verifies_only_itself() {
        let rng = SeededRandom::new(1);
        let a = IssuedSecret::generate("at-0123456789abcdef", &rng);
        let b = IssuedSecret::generate("at-0123456789abcdef", &rng);
        assert_ne!(a, b);
        let hash = a.hash();
        assert!(hash.verify(a.expose()));
        assert!(!hash.verify(b.expose()));
        assert_eq!(token_id_part(a.expose()), Some("at-0123456789abcdef"));
        assert_eq!(a.expose().len(), "at-0123456789abcdef.".len() + 64);
        assert_eq!(format!("{a:?}"), "IssuedSecret(<redacted>)");
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = SecretHash::of("x");
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
    }

    #[test]
    fn token_id_part_needs_the_full_shape() {
        assert_eq!(token_id_part("abc"), None);
        assert_eq!(token_id_part("at-x.short"), None);
        assert_eq!(token_id_part(&format!(".{}", "0".repeat(64))), None);
    }
}
