//! Secrets the service hands out (API keys, device tokens, invite codes) are stored only as
//! their SHA-256: a database leak reveals none of them.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256, as `api_keys.key_hash`, `devices.token_hash` and
/// `group_invites.code_hash` store it.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
