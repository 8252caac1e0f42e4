//! Room tokens: JWTs (HS256) that say who may join which room as what,
//! checked before a WebSocket is upgraded. The claims follow LiveKit's
//! shape where it fits: `sub` (identity), `name`, `exp`, `nbf`, and a
//! `grant` with `room`, `role`, `can_publish`, `can_subscribe`.
//! Pure: the time is passed in (`jsonwebtoken` checks only the signature
//! here; expiry and not-before are ours).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::protocol::ErrorCode;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Joins its room, sends and receives.
    Participant,
    /// Joins its room receive-only.
    Viewer,
    /// The HTTP API (`/api/...`) of its room, or of every room with `room: "*"`.
    Admin,
}

/// The grant of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The room it is for; `*` (admin tokens only) for every room.
    pub room: String,
    pub role: TokenRole,
    #[serde(default = "yes")]
    pub can_publish: bool,
    #[serde(default = "yes")]
    pub can_subscribe: bool,
}

fn yes() -> bool {
    true
}

/// A room token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Identity of the holder.
    pub sub: String,
    /// Display name (used instead of the `join` message's, when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Not valid before, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub grant: Grant,
}

/// Why a token was refused: HTTP 401 with `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> TokenError {
    TokenError { code, message: message.into() }
}

/// Seconds a clock may be off between the minting and the checking machine.
pub const LEEWAY_SECS: u64 = 30;

/// Sign `claims` with `secret` (HS256).
pub fn mint(secret: &str, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

/// Check a token's signature, expiry and not-before at `now_unix`.
pub fn verify(secret: &str, token: Option<&str>, now_unix: u64) -> Result<Claims, TokenError> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        refuse(ErrorCode::MissingToken, "this server needs a room token: add ?token=... to the URL (or an Authorization: Bearer header)")
    })?;
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => refuse(ErrorCode::InvalidToken, "the room token's signature does not match this server's secret"),
                K::InvalidAlgorithm => refuse(ErrorCode::InvalidToken, "room tokens are signed with HS256"),
                _ => refuse(ErrorCode::InvalidToken, format!("the room token is not a valid token: {e}")),
            }
        })?
        .claims;
    if now_unix >= claims.exp + LEEWAY_SECS {
        return Err(refuse(ErrorCode::ExpiredToken, format!("the room token expired {} s ago; ask for a new one", now_unix - claims.exp)));
    }
    if let Some(nbf) = claims.nbf.filter(|n| now_unix + LEEWAY_SECS < *n) {
        return Err(refuse(ErrorCode::TokenNotYetValid, format!("the room token is valid only in {} s", nbf - now_unix)));
    }
    if claims.grant.room.is_empty() || (claims.grant.room == "*" && claims.grant.role != TokenRole::Admin) {
        return Err(refuse(ErrorCode::InvalidToken, "the room token names no room (`*` is for admin tokens)"));
    }
    Ok(claims)
}

impl Claims {
    /// May the holder use the HTTP API of `room`?
    pub fn admin_of(&self, room: &str) -> bool {
        self.grant.role == TokenRole::Admin && (self.grant.room == "*" || self.grant.room == room)
    }

    /// Is this token for `room` (join)?
    pub fn for_room(&self, room: &str) -> bool {
        self.grant.room == room || (self.grant.role == TokenRole::Admin && self.grant.room == "*")
    }

    /// The holder may only receive (a viewer, or a participant without
    /// `can_publish`).
    pub fn receive_only(&self) -> bool {
        self.grant.role == TokenRole::Viewer || !self.grant.can_publish
    }
}

/// `2h`, `30m`, `45s`, `1d`, or plain seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}`: a duration is a number with s, m, h or d (e.g. 2h)");
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mul).filter(|v| *v > 0).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str, role: TokenRole, exp: u64) -> Claims {
        Claims { sub: "ada".into(), name: Some("Ada".into()), exp, nbf: None, grant: Grant { room: room.into(), role, can_publish: true, can_subscribe: true } }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let c = claims("standup", TokenRole::Participant, 10_000);
        let t = mint("s3cret", &c).unwrap();
        assert_eq!(verify("s3cret", Some(&t), 9_000).unwrap(), c);
        assert_eq!(verify("s3cret", Some(&t), 10_000 + LEEWAY_SECS).unwrap_err().code, ErrorCode::ExpiredToken);
        assert_eq!(verify("other", Some(&t), 9_000).unwrap_err().code, ErrorCode::InvalidToken);
        assert_eq!(verify("s3cret", None, 9_000).unwrap_err().code, ErrorCode::MissingToken);
        assert_eq!(verify("s3cret", Some(""), 9_000).unwrap_err().code, ErrorCode::MissingToken);
        assert_eq!(verify("s3cret", Some("a.b.c"), 9_000).unwrap_err().code, ErrorCode::InvalidToken);
    }

    #[test]
    fn not_before_and_rooms_are_checked() {
        let mut c = claims("standup", TokenRole::Viewer, 10_000);
        c.nbf = Some(5_000);
        let t = mint("k", &c).unwrap();
        assert_eq!(verify("k", Some(&t), 4_000).unwrap_err().code, ErrorCode::TokenNotYetValid);
        let ok = verify("k", Some(&t), 5_000).unwrap();
        assert!(ok.for_room("standup") && !ok.for_room("other") && ok.receive_only() && !ok.admin_of("standup"));
        let star = mint("k", &claims("*", TokenRole::Participant, 10_000)).unwrap();
        assert_eq!(verify("k", Some(&star), 1).unwrap_err().code, ErrorCode::InvalidToken, "`*` is for admins");
        let admin = verify("k", Some(&mint("k", &claims("*", TokenRole::Admin, 10_000)).unwrap()), 1).unwrap();
        assert!(admin.admin_of("any") && admin.for_room("any"));
    }

    #[test]
    fn a_token_signed_with_another_algorithm_is_refused() {
        let c = claims("r", TokenRole::Participant, 10_000);
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &c, &EncodingKey::from_secret(b"k")).unwrap();
        assert_eq!(verify("k", Some(&t), 1).unwrap_err().code, ErrorCode::InvalidToken);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("1d"), Ok(86_400));
        assert!(parse_ttl("2w").is_err() && parse_ttl("h").is_err() && parse_ttl("0").is_err());
    }
}
