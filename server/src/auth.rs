//! HMAC player tokens: `player_id.expiry.signature`, where `expiry` is Unix seconds and
//! `signature` is the lowercase hex HMAC-SHA256 of `player_id.expiry` under `auth.secret`.
//! The signature is compared in constant time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused. The text goes into `Bye{auth_failed}` and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `Hello` carried no token.
    #[error("an auth token is required")]
    Missing,
    /// Not three dot-separated parts, or a part does not parse.
    #[error("the auth token is malformed")]
    Malformed,
    /// The token names another player.
    #[error("the auth token is for another player")]
    WrongPlayer,
    /// The expiry has passed.
    #[error("the auth token expired")]
    Expired,
    /// The signature does not match.
    #[error("the auth token signature is invalid")]
    BadSignature,
}

/// Verifies and mints tokens with one secret.
#[derive(Clone)]
pub struct Authenticator {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<secret>)")
    }
}

impl Authenticator {
    /// An authenticator for this secret.
    pub fn new(secret: &[u8]) -> Authenticator {
        Authenticator {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm exists only to avoid an unwrap.
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(message.as_bytes());
        mac
    }

    /// A token for `player` valid for `ttl` from `now`.
    pub fn mint(&self, player: &str, ttl: Duration, now: SystemTime) -> String {
        let expiry = (now + ttl)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let message = format!("{player}.{expiry}");
        let signature = hex::encode(self.mac(&message).finalize().into_bytes());
        format!("{message}.{signature}")
    }

    /// Checks a token against the player id from `Hello`.
    pub fn verify(
        &self,
        token: Option<&str>,
        player: &str,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        let (message, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (token_player, expiry) = message.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| AuthError::Malformed)?;
        self.mac(message)
            .verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        if token_player != player {
            return Err(AuthError::WrongPlayer);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now >= expiry {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";

    #[test]
    fn a_minted_token_verifies_for_its_player_until_it_expires() {
        let auth = Authenticator::new(SECRET);
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = auth.mint("alice", Duration::from_secs(60), now);
        assert_eq!(auth.verify(Some(&token), "alice", now), Ok(()));
        assert_eq!(
            auth.verify(Some(&token), "bob", now),
            Err(AuthError::WrongPlayer)
        );
        assert_eq!(
            auth.verify(Some(&token), "alice", now + Duration::from_secs(60)),
            Err(AuthError::Expired)
        );
        assert_eq!(auth.verify(None, "alice", now), Err(AuthError::Missing));
    }

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        // Computed with Python: hmac.new(b"0123456789abcdef", b"alice.1000060", "sha256").hexdigest()
        let auth = Authenticator::new(SECRET);
        let token = auth.mint(
            "alice",
            Duration::from_secs(60),
            UNIX_EPOCH + Duration::from_secs(1_000_000),
        );
        assert_eq!(
            token,
            "alice.1000060.2d06cff857361ede506cb5d2a64406013f4b4ea8e37d79fdd1975f8cd46f53b1"
        );
    }

    #[test]
    fn tampering_and_foreign_secrets_are_refused() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = Authenticator::new(SECRET).mint("alice", Duration::from_secs(60), now);
        let other = Authenticator::new(b"another-secret-of-16");
        assert_eq!(
            other.verify(Some(&token), "alice", now),
            Err(AuthError::BadSignature)
        );
        let extended = token.replace("1000060", "9000060");
        assert_eq!(
            Authenticator::new(SECRET).verify(Some(&extended), "alice", now),
            Err(AuthError::BadSignature)
        );
        for bad in ["", "alice", "alice.x.00", "alice.1000060.zz"] {
            assert_eq!(
                Authenticator::new(SECRET).verify(Some(bad), "alice", now),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
    }
}
