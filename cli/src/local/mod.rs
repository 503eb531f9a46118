//! `chorus local`: the service on a local AWS stack, driven by `infra/template.yaml`.

pub mod bridge;
pub mod resources;
pub mod template;
