//! Chorus: multi-step, multi-provider AI workflows. This crate holds everything that is
//! not a Lambda `main`: the domain, the engine, ports and adapters, providers and the
//! routing between them, the HTTP API, and `startup`, which wires them together.

pub mod adapters;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod ports;
pub mod providers;
pub mod routing;
pub mod startup;
pub mod testing;
pub mod tls;
pub mod webhooks;
