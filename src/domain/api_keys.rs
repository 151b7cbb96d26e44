//! API keys: `pm_` + 45 URL-safe base64 characters from a CSPRNG. Only the SHA-256 hash (hex)
//! and the first 8 characters (the prefix an administrator sees, e.g. `pm_aBcDe`) are stored.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;

use crate::{
    db,
    domain::secrets::sha256_hex,
    error::{ApiError, ApiResult},
    model::{ApiKey, Invalidation, IssuedKey, KeyScope},
};

pub const KEY_PREFIX: &str = "pm_";
const RANDOM_CHARS: usize = 45;
pub const KEY_LEN: usize = KEY_PREFIX.len() + RANDOM_CHARS;
pub const DISPLAY_PREFIX_LEN: usize = 8;
const MAX_NAME_LEN: usize = 100;
const MAX_EXPIRY_DAYS: u32 = 3650;

/// Generates a new plaintext key from the thread-local CSPRNG (ChaCha, seeded by the OS).
pub fn generate_key() -> String {
    // 34 random bytes encode to 46 characters; the first 45 carry 270 uniformly random bits.
    let mut bytes = [0u8; 34];
    rand::fill(&mut bytes);
    let encoded = URL_SAFE_NO_PAD.encode(bytes);
    format!("{KEY_PREFIX}{}", &encoded[..RANDOM_CHARS])
}

/// Lower-case hex SHA-256 of the key, as stored in `api_keys.key_hash`.
pub fn hash_key(key: &str) -> String {
    sha256_hex(key)
}

pub fn display_prefix(key: &str) -> &str {
    &key[..DISPLAY_PREFIX_LEN]
}

/// Cheap shape check so that garbage never costs a database round trip.
pub fn looks_like_key(candidate: &str) -> bool {
    candidate.len() == KEY_LEN
        && candidate.starts_with(KEY_PREFIX)
        && candidate[KEY_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How an administrator names an existing key.
#[derive(Debug, Clone)]
pub enum KeySelector {
    Prefix(String),
    Id(i64),
}

/// The key administration behind `phone-manager keys`.
pub struct ApiKeys {
    pool: PgPool,
}

impl ApiKeys {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates and stores a new `full` key; returns it with its plaintext, shown this once.
    pub async fn create(
        &self,
        name: &str,
        is_admin: bool,
        expires_in_days: Option<u32>,
    ) -> ApiResult<IssuedKey> {
        self.create_with_scope(name, KeyScope::Full, is_admin, expires_in_days).await
    }

    /// Creates and stores a new key of `scope`; an admin key must be `full` (400 otherwise).
    pub async fn create_with_scope(
        &self,
        name: &str,
        scope: KeyScope,
        is_admin: bool,
        expires_in_days: Option<u32>,
    ) -> ApiResult<IssuedKey> {
        let name = validate_name(name)?;
        let expires_at = expiry(expires_in_days)?;
        if is_admin && scope != KeyScope::Full {
            return Err(ApiError::field("scope", "an admin key must have the full scope"));
        }
        let mut tx = db::begin(&self.pool).await?;
        let issued = insert_new(&mut tx, name, scope, is_admin, expires_at).await?;
        db::commit(tx).await?;
        Ok(issued)
    }

    pub async fn list(&self) -> ApiResult<Vec<ApiKey>> {
        Ok(db::api_keys::list(&self.pool).await?)
    }

    /// Deactivates the selected key and issues a new one with the same name and role, atomically.
    pub async fn rotate(&self, selector: &KeySelector) -> ApiResult<(ApiKey, IssuedKey)> {
        let mut tx = db::begin(&self.pool).await?;
        let old = resolve(&mut tx, selector).await?;
        if !old.is_active {
            return Err(ApiError::Conflict(format!(
                "key {} ({}) is already inactive; create a new key instead",
                old.prefix, old.name
            )));
        }
        db::api_keys::deactivate(&mut *tx, old.id).await?;
        announce(&mut tx, old.id).await?;
        let expires_at = old.expires_at.filter(|at| *at > Utc::now());
        let issued = insert_new(&mut tx, &old.name, old.scope, old.is_admin, expires_at).await?;
        db::commit(tx).await?;
        Ok((old, issued))
    }

    /// Deactivates the selected key. Deactivating an inactive key is a no-op, so re-running is safe.
    pub async fn deactivate(&self, selector: &KeySelector) -> ApiResult<ApiKey> {
        let mut tx = db::begin(&self.pool).await?;
        let mut key = resolve(&mut tx, selector).await?;
        db::api_keys::deactivate(&mut *tx, key.id).await?;
        announce(&mut tx, key.id).await?;
        db::commit(tx).await?;
        key.is_active = false;
        Ok(key)
    }
}

/// Tells every replica, when the transaction commits, to forget the key.
async fn announce(tx: &mut sqlx::PgConnection, id: i64) -> ApiResult<()> {
    let notice = Invalidation::ApiKey(id).to_string();
    Ok(db::notify::send(tx, db::notify::INVALIDATIONS, &notice).await?)
}

async fn resolve(db: &mut sqlx::PgConnection, selector: &KeySelector) -> ApiResult<ApiKey> {
    match selector {
        KeySelector::Id(id) => db::api_keys::find_by_id(db, *id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no API key with id {id}"))),
        KeySelector::Prefix(prefix) => {
            if prefix.len() < 4 {
                return Err(ApiError::field("prefix", "give at least 4 characters of the key prefix"));
            }
            let mut matches = db::api_keys::find_by_prefix(db, prefix).await?;
            match matches.len() {
                0 => Err(ApiError::NotFound(format!("no API key with prefix {prefix}"))),
                1 => Ok(matches.remove(0)),
                n => Err(ApiError::Conflict(format!(
                    "prefix {prefix} matches {n} keys (ids {}); use --id",
                    matches.iter().map(|k| k.id.to_string()).collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

async fn insert_new(
    tx: &mut sqlx::PgConnection,
    name: &str,
    scope: KeyScope,
    is_admin: bool,
    expires_at: Option<DateTime<Utc>>,
) -> ApiResult<IssuedKey> {
    let key = generate_key();
    let hash = hash_key(&key);
    let row =
        db::api_keys::NewKey { hash: &hash, prefix: display_prefix(&key), name, scope, is_admin, expires_at };
    let record = db::api_keys::insert(tx, row).await?;
    Ok(IssuedKey {
        id: record.id,
        key,
        prefix: record.prefix,
        name: record.name,
        is_admin: record.is_admin,
        scope: record.scope,
        expires_at: record.expires_at,
    })
}

fn validate_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    crate::domain::text::plain(name, 1, MAX_NAME_LEN).map_err(|problem| {
        ApiError::field("name", problem.message.map_or_else(|| "is invalid".to_owned(), |m| m.into_owned()))
    })?;
    Ok(name)
}

fn expiry(days: Option<u32>) -> ApiResult<Option<DateTime<Utc>>> {
    match days {
        None => Ok(None),
        Some(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => Ok(Some(Utc::now() + Duration::days(d.into()))),
        Some(_) => {
            Err(ApiError::field("expires_in_days", format!("must be between 1 and {MAX_EXPIRY_DAYS}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate_key();
        assert_eq!(key.len(), 48);
        assert!(key.starts_with("pm_"));
        assert!(looks_like_key(&key), "{key}");
        assert_eq!(display_prefix(&key).len(), 8);
        assert_ne!(generate_key(), key);
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn rejects_malformed_keys_without_a_lookup() {
        assert!(!looks_like_key(""));
        assert!(!looks_like_key("pm_short"));
        assert!(!looks_like_key(&format!("xx_{}", "a".repeat(45))));
        assert!(!looks_like_key(&format!("pm_{}", "a".repeat(44) + "!")));
        assert!(looks_like_key(&format!("pm_{}", "a-_Z9".repeat(9))));
    }

    #[test]
    fn expiry_is_bounded() {
        assert!(expiry(None).unwrap().is_none());
        assert!(expiry(Some(1)).unwrap().is_some());
        assert!(expiry(Some(0)).is_err());
        assert!(expiry(Some(MAX_EXPIRY_DAYS + 1)).is_err());
    }
}
