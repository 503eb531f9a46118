//! Picks models for a step, retries and falls back between them.
