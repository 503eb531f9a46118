//! Chorus: multi-step, multi-provider AI workflows. This crate holds everything that is
//! not a Lambda `main`: the domain, the engine, ports and adapters, providers and the HTTP API.

pub mod adapters;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
pub mod lambda;
pub mod notify;
pub mod ports;
pub mod providers;
