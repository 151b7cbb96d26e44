//! The types every layer shares: what a fix, a device, an API key, an idempotency record and an
//! audit entry are. `db` reads and writes them, `domain` works with them, `http` serializes
//! them; this module imports none of those, only libraries, so any layer may import it.
//!
//! A type that is also a JSON shape of the API derives `Serialize` and `ToSchema` here, once;
//! its name in the OpenAPI document follows the `…Response` rule (`#[schema(as = …)]`).

pub mod api_key;
pub mod audit;
pub mod device;
pub mod fix;
pub mod idempotency;
pub mod live;
pub mod schema;

pub use api_key::{
    ApiKey, Caller, Credentials, DeviceCredential, Invalidation, IssuedKey, KeyScope, Presented,
};
pub use audit::{Actor, AuditEntry, AuditFilter, AuditPage, NewAuditEntry};
pub use device::{
    DataExport, Device, GroupListing, GroupMember, Invite, LastLocation, Membership, Platform, Registration,
    SystemStats,
};
pub use fix::{Fix, Order, StoredFix, Upload, UploadReceipt};
pub use idempotency::{IdempotencyKey, StoredResponse};
pub use live::{
    LiveNotice, LocationEvent, LocationNotice, LocationNotices, MemberChange, MemberEvent, MemberNotice,
    ResyncEvent, ResyncReason,
};
