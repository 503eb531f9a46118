//! `chorus dev`'s API keys: `--api-key TENANT:KEY` flags, the `CHORUS_API_KEYS` environment
//! variable (`TENANT:KEY` entries separated by commas or new lines) and `--api-keys-file`
//! (one `TENANT:KEY` per line, `#` comments and blank lines ignored). The last two keep keys
//! out of the command line, which `ps` and shell history show to anyone. An error names the
//! entry or line and what is wrong with it, never what it holds: a malformed line may be a key.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use chorus::domain::TenantId;
use secrecy::SecretString;
use thiserror::Error;

/// The environment variable that may hold API keys.
pub const ENV_VARIABLE: &str = "CHORUS_API_KEYS";

/// A tenant's API key. `Debug` never shows the key.
#[derive(Clone)]
pub struct ApiKey {
    pub tenant: TenantId,
    pub key: SecretString,
}

impl Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// What is wrong with one `TENANT:KEY` entry. Quotes nothing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MalformedKey {
    #[error("expected TENANT:KEY (no `:` found)")]
    NoColon,
    #[error("the tenant before `:` is not a valid tenant name (1 to 64 letters, digits, `-` or `_`)")]
    BadTenant,
    #[error("the key after `:` is empty")]
    EmptyKey,
}

/// Why the keys could not be read.
#[derive(Debug, Error)]
pub enum ApiKeysError {
    #[error("cannot read the API keys file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} line {line}: {problem}", path.display())]
    FileLine { path: PathBuf, line: usize, problem: MalformedKey },
    #[error("{ENV_VARIABLE} entry {entry}: {problem}")]
    EnvEntry { entry: usize, problem: MalformedKey },
}

/// `TENANT:KEY`; only the first colon separates, so keys may contain colons.
pub fn parse_api_key(raw: &str) -> Result<ApiKey, MalformedKey> {
    let (tenant, key) = raw.split_once(':').ok_or(MalformedKey::NoColon)?;
    let tenant = TenantId::parse(tenant.trim()).map_err(|_| MalformedKey::BadTenant)?;
    let key = key.trim();
    if key.is_empty() {
        return Err(MalformedKey::EmptyKey);
    }
    Ok(ApiKey { tenant, key: SecretString::from(key.to_owned()) })
}

/// The keys in `CHORUS_API_KEYS`'s value: entries separated by commas or new lines, blank
/// ones skipped. Entries are numbered from 1 among the non-blank ones.
pub fn from_env_value(value: &str) -> Result<Vec<ApiKey>, ApiKeysError> {
    value
        .split([',', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            parse_api_key(entry).map_err(|problem| ApiKeysError::EnvEntry { entry: index + 1, problem })
        })
        .collect()
}

/// The keys in the file at `path`.
pub fn from_file(path: &Path) -> Result<Vec<ApiKey>, ApiKeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApiKeysError::Read { path: path.to_owned(), source })?;
    warn_if_others_can_read(path);
    from_file_text(path, &text)
}

/// The keys in a keys file's `text`: one `TENANT:KEY` per line; blank lines and lines
/// starting with `#` are skipped.
fn from_file_text(path: &Path, text: &str) -> Result<Vec<ApiKey>, ApiKeysError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = parse_api_key(line).map_err(|problem| ApiKeysError::FileLine {
            path: path.to_owned(),
            line: index + 1,
            problem,
        })?;
        keys.push(key);
    }
    Ok(keys)
}

/// A keys file others may read is worth a word: the keys are as exposed as on the command line.
#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the API keys file is readable by other users; `chmod 600` it");
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_path: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn pairs(keys: &[ApiKey]) -> Vec<(String, String)> {
        keys.iter().map(|k| (k.tenant.to_string(), k.key.expose_secret().to_owned())).collect()
    }

    #[test]
    fn api_keys_parse_as_tenant_and_key() {
        let key = parse_api_key("t1:secret-key").unwrap();
        assert_eq!(key.tenant.as_str(), "t1");
        assert_eq!(key.key.expose_secret(), "secret-key");
        assert!(!format!("{key:?}").contains("secret-key"));
        // Only the first colon separates: keys may contain colons.
        assert_eq!(parse_api_key("t1:a:b").unwrap().key.expose_secret(), "a:b");
        assert_eq!(parse_api_key("nokey").unwrap_err(), MalformedKey::NoColon);
        assert_eq!(parse_api_key("t1:").unwrap_err(), MalformedKey::EmptyKey);
        assert_eq!(parse_api_key(":key").unwrap_err(), MalformedKey::BadTenant);
        assert_eq!(parse_api_key("bad tenant:key").unwrap_err(), MalformedKey::BadTenant);
    }

    #[test]
    fn the_environment_lists_keys_separated_by_commas_or_lines() {
        let keys = from_env_value(" acme:ck_1, globex:ck_2\nacme:ck_3,,").unwrap();
        assert_eq!(
            pairs(&keys),
            [("acme".into(), "ck_1".into()), ("globex".into(), "ck_2".into()), ("acme".into(), "ck_3".into())]
        );
        assert!(from_env_value("").unwrap().is_empty());
    }

    #[test]
    fn a_keys_file_skips_comments_and_blank_lines() {
        let text = "# dev keys\n\nacme:ck_1\n   # indented comment\nglobex:ck:with:colons\n";
        let keys = from_file_text(Path::new("keys.txt"), text).unwrap();
        assert_eq!(pairs(&keys), [("acme".into(), "ck_1".into()), ("globex".into(), "ck:with:colons".into())]);
    }

    #[test]
    fn a_malformed_entry_is_named_by_its_line_or_position_and_never_quoted() {
        let text = "acme:ck_good\n# comment\nck_secret_without_tenant\n";
        let err = from_file_text(Path::new("/etc/chorus/keys"), text).unwrap_err();
        assert_eq!(err.to_string(), "/etc/chorus/keys line 3: expected TENANT:KEY (no `:` found)");
        let err = from_env_value("acme:ck_good, ck_secret_not a tenant:ck_x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "CHORUS_API_KEYS entry 2: the tenant before `:` is not a valid tenant name (1 to 64 letters, digits, `-` or `_`)"
        );
        for err in [from_file_text(Path::new("k"), "acme:\n").unwrap_err(), from_env_value("ck_secret").unwrap_err()] {
            assert!(!format!("{err} {err:?}").contains("ck_"), "{err}");
        }
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let err = from_file(Path::new("/nonexistent/chorus-keys")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read the API keys file /nonexistent/chorus-keys"), "{err}");
    }
}
