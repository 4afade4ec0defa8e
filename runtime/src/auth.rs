//! The shared-secret handshake: each side proves it knows the secret without sending it.
//!
//! With a secret configured ([`RuntimeBuilder::shared_secret`](crate::RuntimeBuilder::shared_secret)),
//! a runtime puts a fresh 32-byte random challenge in its Hello. Each side answers the peer's
//! challenge with an Auth frame holding
//! `HMAC-SHA256(secret, "oxrmi-auth-v1" ‖ their challenge ‖ our challenge ‖ our id ‖ their id)`,
//! and checks the peer's answer (in constant time) before it reads any other frame. The order of
//! the fields differs by direction, so an answer cannot be reflected back; a peer that repeats
//! our own challenge or runtime id is refused outright. A wrong, missing or unexpected secret
//! ends the connection with `AccessDenied` before any call is decoded.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::id::RuntimeId;

/// Bytes of a challenge.
pub(crate) const CHALLENGE_LEN: usize = 32;

/// The shortest secret accepted: shorter ones are guessable.
pub(crate) const MIN_SECRET_LEN: usize = 16;

const LABEL: &[u8] = b"oxrmi-auth-v1";

/// A shared secret. Its bytes never print.
#[derive(Clone)]
pub(crate) struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    fn mac(
        &self,
        challenge: &[u8],
        answerer_challenge: &[u8],
        answerer: RuntimeId,
        asker: RuntimeId,
    ) -> Hmac<Sha256> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        m.update(LABEL);
        m.update(challenge);
        m.update(answerer_challenge);
        m.update(answerer.as_bytes());
        m.update(asker.as_bytes());
        m
    }

    /// Our answer to `their` challenge.
    pub(crate) fn answer(
        &self,
        their: &[u8],
        ours: &[u8],
        us: RuntimeId,
        them: RuntimeId,
    ) -> Vec<u8> {
        self.mac(their, ours, us, them)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `answer` is the right answer of the peer `them` to our challenge.
    pub(crate) fn check(
        &self,
        answer: &[u8],
        ours: &[u8],
        their: &[u8],
        us: RuntimeId,
        them: RuntimeId,
    ) -> bool {
        self.mac(ours, their, them, us).verify_slice(answer).is_ok()
    }
}

/// A fresh random challenge.
pub(crate) fn challenge() -> Vec<u8> {
    let mut c = Vec::with_capacity(CHALLENGE_LEN);
    c.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    c.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_check_only_with_the_same_secret_and_direction() {
        let s = Secret::new(b"correct horse battery staple".to_vec());
        let (a, b) = (RuntimeId::random(), RuntimeId::random());
        let (ca, cb) = (challenge(), challenge());
        assert_ne!(ca, cb);
        // b answers a's challenge; a checks it.
        let ans = s.answer(&ca, &cb, b, a);
        assert!(s.check(&ans, &ca, &cb, a, b));
        // Another secret, a reflected answer, or a tampered one: refused.
        let other = Secret::new(b"another secret, as long as that".to_vec());
        assert!(!other.check(&ans, &ca, &cb, a, b));
        let own = s.answer(&cb, &ca, a, b);
        assert!(
            !s.check(&own, &ca, &cb, a, b),
            "a's own answer passed as b's"
        );
        let mut bad = ans.clone();
        bad[0] ^= 1;
        assert!(!s.check(&bad, &ca, &cb, a, b));
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
