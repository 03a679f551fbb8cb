//! Layer 3, the operations: one file per service, registered in one table, with the
//! orchestration of `provision` and `status` at the top.
//!
//! Files, lowest first (each uses only the ones before it, [`crate::client`] and
//! [`crate::types`]): `common` (the checked request, identifier fields), `store` (what is
//! stored, the store probe) and `key_cache` (the cached Keys API session of SIM mode); the
//! services `keys` (SORACOM's Keys API: the AKA exchange of SIM mode), `azure`, `aws` (AWS
//! IoT), `cognito`, `inventory`, `arc`, `air` (none uses another); `table` (the one table of
//! operations); `provision` (the orchestration).

pub mod common;
pub mod key_cache;
pub mod store;

pub mod keys;

pub mod air;
pub mod arc;
pub mod aws;
pub mod azure;
pub mod cognito;
pub mod inventory;

pub mod table;

pub mod provision;

pub use provision::{provision, status};
pub use store::{Stored, load, read_stored};
pub use table::{OPERATIONS, Operation, operation};
