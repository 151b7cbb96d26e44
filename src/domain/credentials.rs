//! Authentication: an `X-API-Key` on every `/api/v1` request and, for the device an app acts
//! as, its device token (`Authorization: Bearer pmd_…`). Both are random secrets of which only
//! the SHA-256 (hex) is stored; both are resolved through this replica's caches, which notices
//! from other replicas keep current (`infra::listener`).
//!
//! Device tokens are `pmd_` + 43 URL-safe base64 characters: 256 bits from the thread-local
//! CSPRNG (ChaCha, seeded by the OS), issued once when a device registers.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use sqlx::PgPool;

use crate::{
    db,
    domain::{api_keys::looks_like_key, secrets::sha256_hex},
    error::{ApiError, ApiResult},
    infra::credential_cache::{KeyCache, TokenCache},
    model::{ApiKey, Credentials, DeviceCredential, Presented},
};

pub const TOKEN_PREFIX: &str = "pmd_";
const TOKEN_BYTES: usize = 32;
/// `pmd_` and the base64url of 32 bytes without padding.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 43;
/// `last_used_at` is rewritten at most this often per key (and replica): one write per key per
/// minute instead of one per request.
const LAST_USED_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

/// A new device token, shown to its device once.
pub fn generate_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::fill(&mut bytes);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Cheap shape check so that garbage never costs a database round trip.
pub fn looks_like_token(candidate: &str) -> bool {
    candidate.len() == TOKEN_LEN
        && candidate.starts_with(TOKEN_PREFIX)
        && candidate[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Resolves the credentials of requests.
pub struct Authenticator {
    pool: PgPool,
    keys: Arc<KeyCache>,
    tokens: Arc<TokenCache>,
}

impl Authenticator {
    pub fn new(pool: PgPool, keys: Arc<KeyCache>, tokens: Arc<TokenCache>) -> Self {
        Self { pool, keys, tokens }
    }

    /// The request's credentials: an active, unexpired API key (401 otherwise) and, when a
    /// device token was sent, the device it belongs to (401 when the token is unknown: a bad
    /// credential is never ignored). Whether the device may act is the rules' business
    /// (`domain::access`): a deactivated device's token still names it, to re-register.
    #[tracing::instrument(name = "auth.api_key", skip_all, fields(key_id = tracing::field::Empty, cached = tracing::field::Empty, device_id = tracing::field::Empty))]
    pub async fn authenticate(&self, key: Option<&str>, token: Option<&str>) -> ApiResult<Credentials> {
        let key = key.map(str::trim).filter(|k| looks_like_key(k)).ok_or(ApiError::Unauthorized)?;
        let key_hash = sha256_hex(key);
        let key = self.key(&key_hash).await?;
        let token_hash = match token {
            None => None,
            Some(token) => Some(sha256_hex(
                Some(token.trim()).filter(|t| looks_like_token(t)).ok_or_else(invalid_token)?,
            )),
        };
        self.with_device(key, Presented { key_hash, token_hash }).await
    }

    /// Checks credentials presented earlier again (by their hashes), as [`authenticate`] would
    /// now: a key deactivated or expired, or a token replaced, since then is refused.
    ///
    /// [`authenticate`]: Authenticator::authenticate
    pub async fn reauthenticate(&self, presented: &Presented) -> ApiResult<Credentials> {
        let key = self.key(&presented.key_hash).await?;
        self.with_device(key, presented.clone()).await
    }

    async fn with_device(&self, key: ApiKey, presented: Presented) -> ApiResult<Credentials> {
        let device = match &presented.token_hash {
            None => None,
            Some(hash) => Some(self.device(hash).await?),
        };
        if let Some(device) = &device {
            tracing::Span::current().record("device_id", tracing::field::display(device.device_id));
        }
        Ok(Credentials { key, device, presented })
    }

    async fn key(&self, hash: &str) -> ApiResult<ApiKey> {
        let span = tracing::Span::current();
        let (authenticated, looked_up) = match self.keys.get(hash) {
            Some(cached) => (cached, false),
            None => {
                let found = db::api_keys::find_active_by_hash(&self.pool, hash)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                self.keys.insert(hash.to_owned(), found.clone());
                (found, true)
            }
        };
        span.record("key_id", authenticated.id);
        span.record("cached", !looked_up);
        let record_use = self.keys.should_record_use(hash, LAST_USED_RESOLUTION).unwrap_or_else(|| {
            authenticated.last_used_at.is_none_or(|at| {
                Utc::now() - at >= chrono::Duration::from_std(LAST_USED_RESOLUTION).expect("small")
            })
        });
        if record_use {
            // Off the request path: a slow or failed bookkeeping write never delays or fails a call.
            let (pool, id) = (self.pool.clone(), authenticated.id);
            tokio::spawn(async move {
                if let Err(err) = db::api_keys::touch_last_used(&pool, id).await {
                    tracing::warn!(error = %err, key_id = id, "could not record key use");
                }
            });
        }
        Ok(authenticated)
    }

    async fn device(&self, hash: &str) -> ApiResult<DeviceCredential> {
        if let Some(cached) = self.tokens.get(hash) {
            return Ok(cached);
        }
        let found = db::devices::find_by_token(&self.pool, hash).await?.ok_or_else(invalid_token)?;
        self.tokens.insert(hash.to_owned(), found.clone());
        Ok(found)
    }
}

fn invalid_token() -> ApiError {
    ApiError::UnauthorizedDevice("Invalid device token".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let token = generate_token();
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(looks_like_token(&token), "{token}");
        assert_ne!(generate_token(), token);
        assert!(!looks_like_token("pmd_short"));
        assert!(!looks_like_token(&format!("pm_{}", &token[3..])));
    }
}
