//! `chorus local`: the service on a local AWS stack, driven by `infra/template.yaml`.

pub mod template;
