//! HMAC player tokens: `player_id.expiry.signature`, where `expiry` is Unix seconds and
//! `signature` is the lowercase hex HMAC-SHA256 of `player_id.expiry` under `auth.secret`.
//! The signature is compared in constant time.
//!
//! An issuer that wants a token good on one instance only binds it to that instance's
//! `auth.audience`: `player_id.expiry@audience.signature`, the signature then covering
//! `player_id.expiry@audience`. Another instance refuses it, saying for which instance it was.
//! A token without an audience is good on every instance that shares the secret.
//!
//! Only the canonical form is accepted (decimal expiry without sign or leading zeros, exactly 64
//! lowercase hex digits), so that one token has one spelling, and no token may live longer than
//! `auth.max_ttl`: an expiry further ahead is refused, whatever its signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::valid_audience;

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
    /// The expiry is further ahead than `auth.max_ttl` allows.
    #[error("the auth token lives longer than this server allows")]
    TooLong,
    /// The token is bound to another instance (or this server has no `auth.audience`).
    #[error("the auth token is for instance {token:?}, this is {}", this.as_deref().map_or("an instance without auth.audience".to_owned(), |a| format!("instance {a:?}")))]
    WrongInstance {
        /// The audience the token names.
        token: String,
        /// This server's `auth.audience`.
        this: Option<String>,
    },
}

/// Why a token could not be minted.
#[cfg(any(feature = "app", feature = "testkit", test))]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The lifetime exceeds `auth.max_ttl`.
    #[error("--ttl {} exceeds auth.max_ttl ({})", humantime::format_duration(*.ttl), humantime::format_duration(*.max))]
    TooLong {
        /// The lifetime asked for.
        ttl: Duration,
        /// The most allowed.
        max: Duration,
    },
    /// A zero lifetime would be expired at once.
    #[error("--ttl must be greater than zero")]
    Zero,
    /// An audience outside the allowed spelling.
    #[error(
        "--audience must be 1 to {} letters, digits, '-', '_' or ':'",
        crate::config::MAX_AUDIENCE
    )]
    BadAudience,
    /// A player id the server would refuse in `Hello`.
    #[error(
        "the player id must be 1 to {} bytes of UTF-8 without control characters",
        protocol::MAX_PLAYER_ID_BYTES
    )]
    BadPlayer,
}

/// True for a player id a `Hello` may carry: 1 to `MAX_PLAYER_ID_BYTES` bytes, no control
/// characters.
#[cfg(any(feature = "app", feature = "testkit", test))]
pub fn valid_player_id(player: &str) -> bool {
    !player.is_empty()
        && player.len() <= protocol::MAX_PLAYER_ID_BYTES
        && !player.chars().any(char::is_control)
}

/// Verifies and mints tokens with one secret.
#[derive(Clone)]
pub struct Authenticator {
    secret: Vec<u8>,
    max_ttl: Duration,
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(<secret>)")
    }
}

impl Authenticator {
    /// An authenticator for this secret, accepting tokens that live at most `max_ttl`.
    pub fn new(secret: &[u8], max_ttl: Duration) -> Authenticator {
        Authenticator {
            secret: secret.to_vec(),
            max_ttl,
            audience: None,
        }
    }

    /// The same, on the instance named `audience` (`auth.audience`): tokens bound to another
    /// instance are refused. An empty name leaves the server without one.
    pub fn for_instance(mut self, audience: &str) -> Authenticator {
        self.audience = (!audience.is_empty()).then(|| audience.to_owned());
        self
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

    /// A token for `player` valid for `ttl` from `now`, on every instance.
    #[cfg(any(feature = "testkit", test))]
    pub fn mint(&self, player: &str, ttl: Duration, now: SystemTime) -> Result<String, MintError> {
        self.mint_for(player, ttl, None, now)
    }

    /// A token for `player` valid for `ttl` from `now`, bound to the instance `audience` when
    /// given.
    #[cfg(any(feature = "app", feature = "testkit", test))]
    pub fn mint_for(
        &self,
        player: &str,
        ttl: Duration,
        audience: Option<&str>,
        now: SystemTime,
    ) -> Result<String, MintError> {
        if ttl.is_zero() {
            return Err(MintError::Zero);
        }
        if audience.is_some_and(|a| !valid_audience(a)) {
            return Err(MintError::BadAudience);
        }
        if !valid_player_id(player) {
            return Err(MintError::BadPlayer);
        }
        if ttl > self.max_ttl {
            return Err(MintError::TooLong {
                ttl,
                max: self.max_ttl,
            });
        }
        let expiry = unix_secs(now).saturating_add(ttl.as_secs());
        let message = match audience {
            Some(audience) => format!("{player}.{expiry}@{audience}"),
            None => format!("{player}.{expiry}"),
        };
        let signature = hex::encode(self.mac(&message).finalize().into_bytes());
        Ok(format!("{message}.{signature}"))
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
        let (expiry, audience) = match expiry.split_once('@') {
            Some((expiry, audience)) if valid_audience(audience) => (expiry, Some(audience)),
            Some(_) => return Err(AuthError::Malformed),
            None => (expiry, None),
        };
        let expiry = canonical_decimal(expiry).ok_or(AuthError::Malformed)?;
        if signature.len() != 64
            || !signature
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AuthError::Malformed);
        }
        let signature = hex::decode(signature).map_err(|_| AuthError::Malformed)?;
        self.mac(message)
            .verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        if token_player != player {
            return Err(AuthError::WrongPlayer);
        }
        let now = unix_secs(now);
        if now >= expiry {
            return Err(AuthError::Expired);
        }
        if expiry - now > self.max_ttl.as_secs() {
            return Err(AuthError::TooLong);
        }
        if let Some(audience) = audience
            && self.audience.as_deref() != Some(audience)
        {
            return Err(AuthError::WrongInstance {
                token: audience.to_owned(),
                this: self.audience.clone(),
            });
        }
        Ok(())
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A decimal number in its one canonical spelling: ASCII digits only, no sign, no leading zero.
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef";
    const DAY: Duration = Duration::from_secs(86_400);

    fn auth() -> Authenticator {
        Authenticator::new(SECRET, DAY)
    }

    #[test]
    fn a_minted_token_verifies_for_its_player_until_it_expires() {
        let auth = auth();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = auth
            .mint("alice", Duration::from_secs(60), now)
            .expect("mint");
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
        let token = auth()
            .mint(
                "alice",
                Duration::from_secs(60),
                UNIX_EPOCH + Duration::from_secs(1_000_000),
            )
            .expect("mint");
        assert_eq!(
            token,
            "alice.1000060.2d06cff857361ede506cb5d2a64406013f4b4ea8e37d79fdd1975f8cd46f53b1"
        );
    }

    #[test]
    fn tampering_and_foreign_secrets_are_refused() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = auth()
            .mint("alice", Duration::from_secs(60), now)
            .expect("mint");
        let other = Authenticator::new(b"another-secret-of-16", DAY);
        assert_eq!(
            other.verify(Some(&token), "alice", now),
            Err(AuthError::BadSignature)
        );
        let extended = token.replace("1000060", "9000060");
        assert_eq!(
            auth().verify(Some(&extended), "alice", now),
            Err(AuthError::BadSignature)
        );
        for bad in ["", "alice", "alice.x.00", "alice.1000060.zz"] {
            assert_eq!(
                auth().verify(Some(bad), "alice", now),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_the_canonical_spelling_is_accepted() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = auth()
            .mint("alice", Duration::from_secs(60), now)
            .expect("mint");
        assert_eq!(auth().verify(Some(&token), "alice", now), Ok(()));
        let (message, signature) = token.rsplit_once('.').expect("three parts");
        let upper = format!("{message}.{}", signature.to_uppercase());
        assert_eq!(
            auth().verify(Some(&upper), "alice", now),
            Err(AuthError::Malformed)
        );
        for expiry in ["01000060", "+1000060", " 1000060"] {
            let respelled = token.replace("1000060", expiry);
            assert_eq!(
                auth().verify(Some(&respelled), "alice", now),
                Err(AuthError::Malformed),
                "{respelled}"
            );
        }
    }

    #[test]
    fn a_token_bound_to_an_instance_is_good_there_only() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let minute = Duration::from_secs(60);
        let a = auth().for_instance("game-a");
        let b = auth().for_instance("game-b");
        let unnamed = auth();
        let for_a = auth()
            .mint_for("alice", minute, Some("game-a"), now)
            .expect("mint");
        assert!(for_a.starts_with("alice.1000060@game-a."), "{for_a}");
        assert_eq!(a.verify(Some(&for_a), "alice", now), Ok(()));
        let refused = b.verify(Some(&for_a), "alice", now);
        assert_eq!(
            refused,
            Err(AuthError::WrongInstance {
                token: "game-a".to_owned(),
                this: Some("game-b".to_owned())
            })
        );
        assert_eq!(
            refused.expect_err("refused").to_string(),
            "the auth token is for instance \"game-a\", this is instance \"game-b\""
        );
        assert!(matches!(
            unnamed.verify(Some(&for_a), "alice", now),
            Err(AuthError::WrongInstance { this: None, .. })
        ));
        // Unbound tokens are good everywhere; the audience is signed, so it cannot be moved.
        let anywhere = auth().mint("alice", minute, now).expect("mint");
        assert_eq!(b.verify(Some(&anywhere), "alice", now), Ok(()));
        let moved = for_a.replace("@game-a", "@game-b");
        assert_eq!(
            b.verify(Some(&moved), "alice", now),
            Err(AuthError::BadSignature)
        );
        for bad in ["", "a.b", "a@b", &"x".repeat(65)] {
            assert_eq!(
                auth().mint_for("alice", minute, Some(bad), now),
                Err(MintError::BadAudience),
                "{bad:?}"
            );
        }
        let spelled = for_a.replace("@game-a", "@");
        assert_eq!(
            a.verify(Some(&spelled), "alice", now),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn lifetimes_are_capped_and_cannot_overflow() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            auth().mint(
                "alice",
                Duration::from_secs(584_542_046_090 * 31_557_600),
                now
            ),
            Err(MintError::TooLong {
                ttl: Duration::from_secs(584_542_046_090 * 31_557_600),
                max: DAY
            })
        );
        assert_eq!(
            auth().mint("alice", Duration::ZERO, now),
            Err(MintError::Zero)
        );
        // A token signed with the right secret but expiring in the far future is refused.
        let forever = Authenticator::new(SECRET, Duration::MAX)
            .mint("alice", Duration::from_secs(u64::MAX), now)
            .expect("mint without a cap");
        assert!(forever.contains(&u64::MAX.to_string()), "{forever}");
        assert_eq!(
            auth().verify(Some(&forever), "alice", now),
            Err(AuthError::TooLong)
        );
    }
}
