//! Bearer tokens for the HTTP API: scoped, named, stored hashed, compared in constant time,
//! with failed attempts rate-limited per client address and overall.
//!
//! A token is `flk_` and 43 characters of base64url (256 random bits). The configuration
//! holds only its SHA-256 (`sha256:<hex>`): a plain hash is enough for a random secret of
//! that length (no dictionary to attack), and a leaked configuration file leaks no token.
//! `lock-daemon token new NAME --scope ...` prints a fresh token once, with the lines to
//! paste into the configuration.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::limit::{Limiter, Rate};

/// What a token may do. `admin` includes `unlock` and `read`; `unlock` includes nothing
/// else (a door-opening integration need not read the event log), so give `read` too when
/// it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Status, events, snapshots, recognise, metrics.
    Read,
    /// Unlock the door for a while (through the door controller and the audit log).
    Unlock,
    /// Change the mode, push a classifier, watch the live preview; includes the others.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Unlock => "unlock",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "unlock" => Ok(Scope::Unlock),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}; use read, unlock or admin"
            )),
        }
    }
}

/// A token as configured: its name (for the audit log), its hash and its scopes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub hash: [u8; 32],
    pub scopes: BTreeSet<Scope>,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// The prefix of every token (recognisable in a leaked paste, and by secret scanners).
pub const TOKEN_PREFIX: &str = "flk_";

/// A fresh random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hash stored in the configuration.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `sha256:<hex>`, as written in the configuration.
pub fn hash_text(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// Parses `sha256:<64 hex digits>`.
pub fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text
        .strip_prefix("sha256:")
        .ok_or_else(|| "does not start with \"sha256:\"".to_owned())?;
    let bytes = hex::decode(hex_part).map_err(|_| "is not hexadecimal after \"sha256:\"")?;
    bytes
        .try_into()
        .map_err(|_| "is not 64 hexadecimal digits after \"sha256:\"".to_owned())
}

/// The configuration lines for a new token.
pub fn config_lines(name: &str, hash: &[u8; 32], scopes: &BTreeSet<Scope>) -> String {
    let scopes: Vec<String> = scopes.iter().map(|s| format!("{:?}", s.as_str())).collect();
    format!(
        "[[http.token]]\nname = {name:?}\nhash = \"{}\"\nscopes = [{}]\n",
        hash_text(hash),
        scopes.join(", ")
    )
}

/// Failed attempts allowed per client address: 5, then one per 12 s (5 a minute).
pub const FAILURES_PER_CLIENT: Rate = Rate {
    capacity: 5,
    refill_every: Duration::from_secs(12),
};
/// Failed attempts allowed from all clients together: 30, then one per 2 s.
pub const FAILURES_OVERALL: Rate = Rate {
    capacity: 30,
    refill_every: Duration::from_secs(2),
};
/// Unlock requests per token: 3, then one per 10 s.
pub const UNLOCKS_PER_TOKEN: Rate = Rate {
    capacity: 3,
    refill_every: Duration::from_secs(10),
};
/// Client addresses tracked at once.
const MAX_CLIENTS_TRACKED: usize = 4096;

/// Why a request was not authorised.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A token that matches no configured one (401).
    Wrong,
    /// A valid token without the scope (403).
    Scope { name: String, needs: Scope },
    /// Too many failures from this address or overall (429).
    Limited { retry_after: Duration },
}

/// Checks tokens and keeps the failure counts.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
    per_client: Limiter<IpAddr>,
    overall: Limiter<()>,
    unlocks: Limiter<String>,
}

impl Authenticator {
    pub fn new(tokens: Vec<TokenEntry>) -> Authenticator {
        Authenticator {
            tokens,
            per_client: Limiter::new(FAILURES_PER_CLIENT, MAX_CLIENTS_TRACKED),
            overall: Limiter::new(FAILURES_OVERALL, 1),
            unlocks: Limiter::new(UNLOCKS_PER_TOKEN, 1024),
        }
    }

    /// Finds the token presented in `authorization` (the header's value, if any) and checks
    /// its scope. A valid token is always let through: the limits apply to failures only,
    /// so a flood of bad requests (which behind a reverse proxy all come from 127.0.0.1)
    /// cannot lock out the clients that hold tokens. A client (or everyone) over the
    /// failure limit gets 429 instead of 401, so guessing cannot continue at full speed.
    pub fn authorize(
        &mut self,
        authorization: Option<&[u8]>,
        client: IpAddr,
        needs: Scope,
        now: Instant,
    ) -> Result<&TokenEntry, Denied> {
        let presented = authorization.and_then(bearer);
        let found = presented.and_then(|token| self.find(token));
        let Some(index) = found else {
            self.per_client
                .check(&client, now)
                .and_then(|()| self.overall.check(&(), now))
                .map_err(|retry_after| Denied::Limited { retry_after })?;
            self.failed(client, now);
            return Err(match presented {
                None => Denied::Missing,
                Some(_) => Denied::Wrong,
            });
        };
        let entry = &self.tokens[index];
        if entry.allows(needs) {
            Ok(entry)
        } else {
            Err(Denied::Scope {
                name: entry.name.clone(),
                needs,
            })
        }
    }

    /// Takes one unlock from the token's allowance; `Err(wait)` when it has none left.
    pub fn take_unlock(&mut self, name: &str, now: Instant) -> Result<(), Duration> {
        self.unlocks.take(&name.to_owned(), now)
    }

    fn failed(&mut self, client: IpAddr, now: Instant) {
        let _ = self.per_client.take(&client, now);
        let _ = self.overall.take(&(), now);
    }

    /// Compares the presented token's hash with every configured hash, all of them, in
    /// constant time each: the time taken says nothing about which bytes matched.
    fn find(&self, presented: &[u8]) -> Option<usize> {
        let hash: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for (i, entry) in self.tokens.iter().enumerate() {
            if bool::from(entry.hash.ct_eq(&hash)) {
                found = Some(i);
            }
        }
        found
    }

    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether a query string carries something that looks like a credential (`token=`,
/// `access_token=`, `api_key=`, `key=`, `auth=`, or any `flk_` token): such requests are
/// refused, whatever else they carry, since URLs end up in proxy and browser logs.
pub fn query_carries_credentials(query: &str) -> bool {
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.to_ascii_lowercase();
        matches!(
            key.as_str(),
            "token" | "access_token" | "api_key" | "apikey" | "key" | "auth" | "bearer"
        ) || value.contains(TOKEN_PREFIX)
            || key.contains(TOKEN_PREFIX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, scopes: &[Scope]) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            hash: hash_token(token),
            scopes: scopes.iter().copied().collect(),
        }
    }

    fn header(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn fresh_tokens_are_random_prefixed_and_hash_to_their_config_line() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        let hash = hash_token(&a);
        assert_eq!(parse_hash(&hash_text(&hash)), Ok(hash));
        let lines = config_lines("door-tablet", &hash, &[Scope::Read, Scope::Unlock].into());
        assert!(lines.contains("name = \"door-tablet\""));
        assert!(lines.contains("scopes = [\"read\", \"unlock\"]"));
        assert!(
            !lines.contains(&a),
            "the token itself is never in the config"
        );
    }

    #[test]
    fn malformed_hashes_are_refused_with_the_reason() {
        assert!(parse_hash("md5:abcd").unwrap_err().contains("sha256:"));
        assert!(parse_hash("sha256:zz").unwrap_err().contains("hexadecimal"));
        assert!(parse_hash("sha256:abcd").unwrap_err().contains("64"));
    }

    #[test]
    fn the_right_token_with_the_scope_is_accepted_and_named() {
        let mut auth = Authenticator::new(vec![
            entry("reader", "flk_r", &[Scope::Read]),
            entry("boss", "flk_a", &[Scope::Admin]),
        ]);
        let now = Instant::now();
        let who = auth
            .authorize(Some(&header("flk_r")), CLIENT, Scope::Read, now)
            .unwrap();
        assert_eq!(who.name, "reader");
        // admin includes the other scopes.
        for scope in [Scope::Read, Scope::Unlock, Scope::Admin] {
            let who = auth
                .authorize(Some(b"bearer   flk_a  "), CLIENT, scope, now)
                .unwrap();
            assert_eq!(who.name, "boss");
        }
    }

    #[test]
    fn missing_wrong_and_underscoped_tokens_are_refused_distinctly() {
        let mut auth = Authenticator::new(vec![entry("reader", "flk_r", &[Scope::Read])]);
        let now = Instant::now();
        assert_eq!(
            auth.authorize(None, CLIENT, Scope::Read, now).unwrap_err(),
            Denied::Missing
        );
        assert_eq!(
            auth.authorize(Some(b"Basic Zm9vOmJhcg=="), CLIENT, Scope::Read, now)
                .unwrap_err(),
            Denied::Missing
        );
        assert_eq!(
            auth.authorize(Some(&header("flk_x")), CLIENT, Scope::Read, now)
                .unwrap_err(),
            Denied::Wrong
        );
        assert_eq!(
            auth.authorize(Some(&header("flk_r")), CLIENT, Scope::Unlock, now)
                .unwrap_err(),
            Denied::Scope {
                name: "reader".into(),
                needs: Scope::Unlock
            }
        );
    }

    #[test]
    fn repeated_failures_are_limited_but_never_lock_out_the_right_token() {
        let mut auth = Authenticator::new(vec![entry("reader", "flk_r", &[Scope::Read])]);
        let t0 = Instant::now();
        for _ in 0..FAILURES_PER_CLIENT.capacity {
            assert_eq!(
                auth.authorize(Some(&header("guess")), CLIENT, Scope::Read, t0)
                    .unwrap_err(),
                Denied::Wrong
            );
        }
        let limited = auth
            .authorize(Some(&header("guess")), CLIENT, Scope::Read, t0)
            .unwrap_err();
        assert!(matches!(limited, Denied::Limited { .. }), "{limited:?}");
        assert!(auth
            .authorize(Some(&header("flk_r")), CLIENT, Scope::Read, t0)
            .is_ok());
        // Another address is not affected.
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(auth
            .authorize(Some(&header("flk_r")), other, Scope::Read, t0)
            .is_ok());
        let later = t0 + FAILURES_PER_CLIENT.refill_every;
        assert!(auth
            .authorize(Some(&header("flk_r")), CLIENT, Scope::Read, later)
            .is_ok());
    }

    #[test]
    fn failures_from_many_addresses_hit_the_overall_limit() {
        let mut auth = Authenticator::new(vec![entry("reader", "flk_r", &[Scope::Read])]);
        let t0 = Instant::now();
        let mut limited = 0;
        for i in 0..100u32 {
            let client = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            if let Err(Denied::Limited { .. }) =
                auth.authorize(Some(&header("guess")), client, Scope::Read, t0)
            {
                limited += 1;
            }
        }
        assert_eq!(limited, 100 - FAILURES_OVERALL.capacity);
    }

    #[test]
    fn unlocks_are_limited_per_token() {
        let mut auth = Authenticator::new(vec![]);
        let t0 = Instant::now();
        for _ in 0..UNLOCKS_PER_TOKEN.capacity {
            auth.take_unlock("tablet", t0).unwrap();
        }
        assert!(auth.take_unlock("tablet", t0).is_err());
        assert!(auth.take_unlock("phone", t0).is_ok());
    }

    #[test]
    fn credentials_in_a_query_string_are_recognised() {
        for query in [
            "token=abc",
            "since=3&access_token=abc",
            "api_key=x",
            "x=flk_abcdef",
            "AUTH=1",
        ] {
            assert!(query_carries_credentials(query), "{query}");
        }
        for query in ["since=3&limit=10", "", "include_predictions=true"] {
            assert!(!query_carries_credentials(query), "{query}");
        }
    }
}
