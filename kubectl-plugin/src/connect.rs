//! Reaching the cluster and gitwarden's endpoints with the user's own
//! credentials: the kubeconfig (file, context, namespace) as kubectl reads
//! it, the bearer token it holds (token, token file or exec plugin), and the
//! webhook's `/audit` and the agent's `/status` — directly (`--webhook-url`,
//! `--agent-url`) or through the API server's service proxy.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use gitwarden_runtime::credential::CredentialError;
use http_body_util::BodyExt as _;
use serde_json::Value;

/// Where the kubeconfig and the endpoints are, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--token`: overrides the kubeconfig's credential for gitwarden's endpoints.
    pub token: Option<String>,
    /// gitwarden's namespace (`--system-namespace`).
    pub system_namespace: String,
    /// `--webhook-url`, `--webhook-ca`.
    pub webhook: Direct,
    /// `--agent-url`, `--agent-ca`.
    pub agent: Direct,
    /// `--webhook-service`: the service proxy target, `SCHEME:NAME:PORT`.
    pub webhook_service: String,
    /// `--agent-service`.
    pub agent_service: String,
}

/// A URL reached directly, and the CA that signs its certificate.
#[derive(Debug, Clone, Default)]
pub struct Direct {
    /// Base URL, e.g. `https://127.0.0.1:8443`.
    pub url: Option<String>,
    /// PEM CA file for an https URL (default: the platform's roots).
    pub ca: Option<PathBuf>,
}

/// The loaded kubeconfig.
pub struct Kube {
    /// The client, acting as the user.
    pub client: kube::Client,
    /// The context's namespace (`default` when it names none).
    pub default_namespace: String,
    config: kube::Config,
}

impl Connection {
    /// The kubeconfig as kubectl would read it: `--kubeconfig`, else
    /// `$KUBECONFIG`, else `~/.kube/config` (else in-cluster), with `--context`.
    pub async fn kube(&self) -> Result<Kube> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .with_context(|| format!("loading the kubeconfig {}", path.display()))?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig")?,
            (None, None) => kube::Config::infer()
                .await
                .context("finding a kubeconfig ($KUBECONFIG, ~/.kube/config or in-cluster)")?,
        };
        let client = kube::Client::try_from(config.clone()).context("building the client")?;
        Ok(Kube {
            client,
            default_namespace: config.default_namespace.clone(),
            config,
        })
    }
}

impl Kube {
    /// The user's bearer token, as gitwarden's endpoints need it (they review
    /// tokens; a client certificate cannot be forwarded).
    pub async fn bearer_token(&self, explicit: Option<&str>) -> Result<String> {
        if let Some(token) = explicit {
            return Ok(token.trim().to_owned());
        }
        gitwarden_runtime::credential::bearer_token(&self.config)
            .await
            .map_err(|e| match e {
                CredentialError::NoToken => anyhow::anyhow!("{e}, or pass --token"),
                other => anyhow::Error::new(other),
            })
    }
}

/// An endpoint's answer.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The response headers (the API server's service proxy passes the
    /// endpoint's through).
    pub headers: http::HeaderMap,
    /// The body, as text.
    pub body: String,
}

/// One of gitwarden's endpoints, and how to reach it.
pub struct Endpoint {
    /// `webhook` or `agent`, for messages.
    pub name: &'static str,
    route: Route,
    token: String,
}

enum Route {
    Direct {
        url: String,
        http: reqwest::Client,
    },
    Proxy {
        client: kube::Client,
        prefix: String,
    },
}

impl Endpoint {
    /// The endpoint `name`: `direct` when a URL is given, otherwise the API
    /// server's proxy to `service` (`SCHEME:NAME:PORT`) in `namespace`.
    pub fn new(
        name: &'static str,
        direct: &Direct,
        kube: &Kube,
        namespace: &str,
        service: &str,
        token: String,
    ) -> Result<Endpoint> {
        let route = match &direct.url {
            Some(url) => {
                let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
                if let Some(ca) = &direct.ca {
                    let pem = std::fs::read(ca)
                        .with_context(|| format!("reading the CA {}", ca.display()))?;
                    http = http.add_root_certificate(
                        reqwest::Certificate::from_pem(&pem)
                            .with_context(|| format!("parsing the CA {}", ca.display()))?,
                    );
                }
                Route::Direct {
                    url: url.trim_end_matches('/').to_owned(),
                    http: http.build()?,
                }
            }
            None => Route::Proxy {
                client: kube.client.clone(),
                prefix: format!("/api/v1/namespaces/{namespace}/services/{service}/proxy"),
            },
        };
        Ok(Endpoint { name, route, token })
    }

    /// GET `path_and_query`: the status, headers and body, whatever the status.
    pub async fn fetch(&self, path_and_query: &str) -> Result<Answer> {
        match &self.route {
            Route::Direct { url, http } => {
                let full = format!("{url}{path_and_query}");
                let resp = http
                    .get(&full)
                    .bearer_auth(&self.token)
                    .send()
                    .await
                    .with_context(|| format!("GET {full}"))?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.text().await.unwrap_or_default();
                Ok(Answer {
                    status,
                    headers,
                    body,
                })
            }
            Route::Proxy { client, prefix } => {
                // The API server authenticates the request itself and strips
                // Authorization; the endpoint reviews the forwarded token.
                let request = http::Request::get(format!("{prefix}{path_and_query}"))
                    .header(
                        gitwarden_runtime::access::FORWARDED_AUTHORIZATION,
                        format!("Bearer {}", self.token),
                    )
                    .body(Vec::new())?;
                let resp = client
                    .send(request.map(kube::client::Body::from))
                    .await
                    .with_context(|| {
                        format!("GET {prefix}{path_and_query} (the API server's service proxy)")
                    })?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                Ok(Answer {
                    status,
                    headers,
                    body,
                })
            }
        }
    }

    /// GET `path_and_query` as JSON; a refusal is an error that says who
    /// refused and why.
    pub async fn get_json(&self, path_and_query: &str) -> Result<Value> {
        Ok(self.fetch_json(path_and_query).await?.0)
    }

    /// [`Endpoint::get_json`], with the response's headers.
    pub async fn fetch_json(&self, path_and_query: &str) -> Result<(Value, http::HeaderMap)> {
        let Answer {
            status,
            headers,
            body,
        } = self.fetch(path_and_query).await?;
        let value = self.json(path_and_query, status, &body)?;
        Ok((value, headers))
    }

    fn json(&self, path_and_query: &str, status: u16, body: &str) -> Result<Value> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        match status {
            200..=299 => serde_json::from_str(body)
                .with_context(|| format!("the {} answered {path} with no JSON", self.name)),
            401 => bail!(
                "the {} did not accept your credentials for {path} (401 Unauthorized): {}",
                self.name,
                body.trim()
            ),
            403 => bail!(
                "the {} refused {path} (403 Forbidden): {}",
                self.name,
                body.trim()
            ),
            _ => bail!(
                "the {} answered {path} with {status}: {}",
                self.name,
                body.trim()
            ),
        }
    }
}
