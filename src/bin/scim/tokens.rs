//! The bearer tokens (SPEC §8): one or two, in the Secrets Manager secret named by
//! `SCIM_TOKEN_SECRET_ARN` as `{"tokens": ["…"]}`, so that a new token can be given to
//! the identity provider while the old one still works. Re-read at most every five
//! minutes; a failed re-read keeps the tokens already known (a Secrets Manager outage
//! does not lock the identity provider out), a secret that no longer holds a token
//! does not replace them either.
//!
//! Compared in constant time: each token is kept as its SHA-256 digest and the
//! presented one is hashed too, so the comparison (`subtle`) runs over 32 bytes whatever
//! the lengths, and neither a token's length nor its prefix shows in the time taken.

use std::sync::Mutex;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use connect_identity_sync::config::ConfigError;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::time::Instant;

/// How long tokens read from the secret are trusted before they are read again.
pub const REFRESH: Duration = Duration::from_secs(300);

/// Tokens a secret may hold (a current one and the one being rotated in).
const MAX_TOKENS: usize = 2;

const VARIABLE: &str = "SCIM_TOKEN_SECRET_ARN";

type Digests = Vec<[u8; 32]>;

pub struct Tokens {
    client: Client,
    secret: String,
    known: Mutex<(Digests, Instant)>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn problem(text: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: VARIABLE.to_owned(),
        problem: text.into(),
    }
}

/// The tokens of a secret string, or why it holds none (never quoting it).
fn parse(secret: &str) -> Result<Digests, String> {
    let value: serde_json::Value = serde_json::from_str(secret)
        .map_err(|_| "the secret is not JSON of the form {\"tokens\": [\"…\"]}".to_owned())?;
    let Some(list) = value.get("tokens").and_then(serde_json::Value::as_array) else {
        return Err("the secret has no \"tokens\" array".into());
    };
    let tokens: Vec<&str> = list
        .iter()
        .map(|t| t.as_str().map(str::trim).filter(|t| !t.is_empty()))
        .collect::<Option<_>>()
        .ok_or_else(|| "a member of \"tokens\" is not a non-empty string".to_owned())?;
    match tokens.len() {
        0 => Err("the secret's \"tokens\" array is empty".into()),
        n if n > MAX_TOKENS => Err(format!(
            "the secret holds {n} tokens; one or two are accepted (the current one and the next)"
        )),
        _ => Ok(tokens.iter().map(|t| digest(t.as_bytes())).collect()),
    }
}

impl Tokens {
    /// Reads the secret once; without a token the endpoint does not start.
    pub async fn load(shared: &SdkConfig, secret: &str) -> Result<Self, ConfigError> {
        let client = Client::new(shared);
        let digests = read(&client, secret).await.map_err(problem)?;
        Ok(Tokens {
            client,
            secret: secret.to_owned(),
            known: Mutex::new((digests, Instant::now())),
        })
    }

    /// Whether `presented` is one of the tokens, read again first when they are older
    /// than [`REFRESH`].
    pub async fn accepts(&self, presented: &[u8]) -> bool {
        let stale = self.lock().1.elapsed() >= REFRESH;
        if stale {
            match read(&self.client, &self.secret).await {
                Ok(digests) => *self.lock() = (digests, Instant::now()),
                Err(reason) => {
                    tracing::warn!(
                        variable = VARIABLE,
                        "the tokens could not be read again; the ones read before stay in use: {reason}"
                    );
                    // Tried now: the next try waits a period, not every request.
                    self.lock().1 = Instant::now();
                }
            }
        }
        let presented = digest(presented);
        let known = self.lock();
        known
            .0
            .iter()
            .fold(Choice::from(0), |any, d| any | d.ct_eq(&presented))
            .into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Digests, Instant)> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn read(client: &Client, secret: &str) -> Result<Digests, String> {
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            // The error's code only: a message could quote the request.
            let code = e
                .as_service_error()
                .and_then(|s| aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(s))
                .unwrap_or("no answer");
            format!("GetSecretValue failed ({code})")
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| "the secret has no SecretString".to_owned())?;
    parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_two_tokens_are_read_and_anything_else_is_refused_without_quoting_it() {
        assert_eq!(parse(r#"{"tokens": ["a"]}"#).unwrap().len(), 1);
        assert_eq!(parse(r#"{"tokens": ["a", "b"]}"#).unwrap().len(), 2);
        for bad in [
            r#"{"tokens": []}"#,
            r#"{"tokens": ["a", "b", "c"]}"#,
            r#"{"tokens": ["s3cr3t-value", ""]}"#,
            r#"{"tokens": "s3cr3t-value"}"#,
            r#"{"token": ["s3cr3t-value"]}"#,
            "s3cr3t-value",
        ] {
            let reason = parse(bad).unwrap_err();
            assert!(!reason.contains("s3cr3t"), "{reason}");
        }
    }
}
