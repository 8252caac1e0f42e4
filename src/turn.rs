//! The ICE servers a client is given in `joined`: STUN as configured, and
//! TURN with short-lived credentials (the TURN REST scheme coturn checks
//! with `--use-auth-secret --static-auth-secret`): username
//! `<expiry unix time>:<participant id>`, credential
//! base64(HMAC-SHA1(secret, username)). Pure, with the time passed in.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::config::IceServers;
use crate::protocol::IceServer;

/// TURN REST credentials for `id`, valid until `now_unix + ttl_secs`.
pub fn credentials(secret: &str, id: &str, now_unix: u64, ttl_secs: u64) -> (String, String) {
    let username = format!("{}:{id}", now_unix + ttl_secs);
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|e| unreachable!("HMAC key: {e}"));
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

/// What participant `id` joining at `now_unix` is told to use.
pub fn ice_servers(cfg: &IceServers, id: &str, now_unix: u64) -> Vec<IceServer> {
    let mut out = Vec::new();
    if !cfg.stun.is_empty() {
        out.push(IceServer { urls: cfg.stun.clone(), username: None, credential: None });
    }
    if let (false, Some(secret)) = (cfg.turn.is_empty(), &cfg.turn_secret) {
        let (username, credential) = credentials(secret, id, now_unix, cfg.turn_ttl_secs);
        out.push(IceServer { urls: cfg.turn.clone(), username: Some(username), credential: Some(credential) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_what_coturn_computes_from_the_shared_secret() {
        // Python: base64(hmac.new(b"north", b"1700086400:p7", sha1).digest())
        let (u, c) = credentials("north", "p7", 1_700_000_000, 86_400);
        assert_eq!(u, "1700086400:p7");
        assert_eq!(c, "feUJjB3zpqOCotTY82kk2Z1oFWI=");
    }

    #[test]
    fn stun_and_turn_are_given_as_configured() {
        let cfg = IceServers {
            stun: vec!["stun:stun.example.org:3478".into()],
            turn: vec!["turn:turn.example.org:3478".into(), "turns:turn.example.org:5349?transport=tcp".into()],
            turn_secret: Some("s".into()),
            turn_ttl_secs: 600,
        };
        let s = ice_servers(&cfg, "p3", 1000);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].urls.len(), &s[0].username), (1, &None));
        assert_eq!(s[1].urls, cfg.turn);
        assert_eq!(s[1].username.as_deref(), Some("1600:p3"));
        assert!(ice_servers(&IceServers::default(), "p3", 1000).is_empty(), "nothing configured, nothing sent");
    }
}
