//! End-to-end tests: the real component (built from `guest/` by `host/build.rs`) in the real
//! host, against the mock Krypton over HTTPS on 127.0.0.1 (port 0), both through the library
//! API and through the `krypton-host` binary.

mod basics;
mod cache;
mod cli;
mod crash;
mod crosscheck;
mod daemon;
mod docs;
mod doctor;
mod exports;
mod failures;
mod fleet;
mod hostile_targets;
mod hostile_values;
mod openssl;
mod outbound;
mod precompiled;
mod probation;
mod registry;
mod registry_support;
mod registry_transport;
mod sandbox;
mod secrets;
mod service;
mod signatures;
mod sim;
mod sim_hostile;
mod stock_wasmtime;
mod support;
mod targets;
mod trust;
mod userfiles;
