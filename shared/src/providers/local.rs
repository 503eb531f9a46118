//! The offline, deterministic `local` provider.
