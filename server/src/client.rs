//! The operator API's client, used by the CLI.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A client of one server with one operator token.
#[derive(Debug, Clone)]
pub struct OperatorClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// How to trust the server's certificate.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's roots.
    #[default]
    System,
    /// Only this PEM file (the server's auto-TLS certificate, or its CA).
    CaFile(std::path::PathBuf),
    /// No verification (`--insecure`).
    Insecure,
}

impl OperatorClient {
    pub fn new(base: &str, token: &str, trust: &Trust) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy();
        match trust {
            Trust::System => {}
            Trust::CaFile(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("parsing {} as a PEM certificate", path.display()))?;
                builder = builder
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(cert);
            }
            Trust::Insecure => builder = builder.danger_accept_invalid_certs(true),
        }
        Ok(OperatorClient {
            http: builder.build().context("building the HTTP client")?,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// Reads the token from `path` (the file `serve` writes).
    pub fn token_from_file(path: &Path) -> Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the operator token from {} (give --token, or --data-dir of the server)",
                path.display()
            )
        })?;
        let token = text.trim().to_string();
        if token.is_empty() {
            bail!("the operator token file {} is empty", path.display());
        }
        Ok(token)
    }

    /// One call; returns the JSON body (null when empty). Errors carry the server's message.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        if !status.is_success() {
            bail!("{method} {url}: HTTP {status}: {}", error_text(&text));
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: the answer is not JSON"))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// GETs `path` into the file `output` (`-`: stdout) as it arrives; a file is written
    /// next to `output` and renamed when complete. Returns the number of bytes.
    pub async fn download(&self, path: &str, output: &Path) -> Result<u64> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("GET {url}: HTTP {status}: {}", error_text(&text));
        }
        let to_stdout = output == Path::new("-");
        let (mut out, temp): (Box<dyn Write>, _) = if to_stdout {
            (Box::new(std::io::stdout().lock()), None)
        } else {
            let dir = match output.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let temp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
            let file = temp.reopen().context("opening the temporary file")?;
            (Box::new(std::io::BufWriter::new(file)), Some(temp))
        };
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading the answer to GET {url}"))?
        {
            out.write_all(&chunk)
                .with_context(|| format!("writing {}", output.display()))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .with_context(|| format!("writing {}", output.display()))?;
        drop(out);
        if let Some(temp) = temp {
            temp.persist(output)
                .with_context(|| format!("renaming the download to {}", output.display()))?;
        }
        Ok(written)
    }
}

/// The message of an operator API error body, or the body itself.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string())
}

/// Escapes a node name or UUID for a URL path.
pub fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
