//! Infrastructure that owns tasks, connections or caches, in service of the rules in
//! `domain`: group commit of uploads, the `last_seen_at` write-behind, the credential caches,
//! the notice listener, the live streams' fan-out and the rate limiters. Nothing here decides a
//! business rule.

pub mod credential_cache;
pub mod ingest;
pub mod last_seen;
pub mod listener;
pub mod live;
pub mod publish;
pub mod rate_limit;
