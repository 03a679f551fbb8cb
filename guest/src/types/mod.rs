//! Layer 1, the types and their pure rules: no I/O, no capability, nothing from the layers
//! above.
//!
//! Files, lowest first (each uses only the ones before it): `model` (plain-Rust mirrors of the
//! WIT types, the error and its advice, [`model::Secret`]); `identifiers` (each service's rule
//! for its identifiers), `json` (reading Krypton's JSON), `text` (the only ways a value enters
//! a `wg-quick` or environment file, `file://` URIs), `net` (CIDRs, local addresses);
//! `validate` (PEM, X.509, keys and their match); `bundle` (what is stored and its checks).

pub mod model;

pub mod identifiers;
pub mod json;
pub mod net;
pub mod text;

pub mod validate;

pub mod bundle;
