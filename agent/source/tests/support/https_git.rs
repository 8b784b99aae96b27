//! A real git smart-HTTP server over TLS for tests: git's own `git http-backend` run as a CGI
//! program behind a small hyper + rustls front end on 127.0.0.1 that demands HTTP basic
//! authentication, the way a git host serving private repositories does.
#![allow(clippy::unwrap_used, dead_code)]

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test certificate authority (rcgen): its PEM certificate is what a client trusts.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// A serving certificate and its key, PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `127.0.0.1` (and `localhost`) signed by this CA.
    pub fn issue_localhost(&self) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Write the CA certificate to `dir/name` (for `SourceOptions::ca_file`).
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).unwrap();
        path
    }
}

/// One request as the front end saw it, for assertions about what reached the server.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub user: Option<String>,
}

struct State {
    project_root: PathBuf,
    /// Accepted `(user, password)` pairs.
    accounts: Vec<(String, String)>,
    seen: Mutex<Vec<Seen>>,
    handshakes: AtomicUsize,
}

/// The running server; stops when dropped.
pub struct HttpsGitServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    state: Arc<State>,
}

impl HttpsGitServer {
    /// Serve the bare repositories under `project_root` with `cert`, accepting basic
    /// authentication with any of `accounts` (user, password) and nothing else.
    pub fn start(project_root: &Path, cert: &ServerCert, accounts: &[(&str, &str)]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(State {
            project_root: project_root.to_path_buf(),
            accounts: accounts
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            seen: Mutex::new(Vec::new()),
            handshakes: AtomicUsize::new(0),
        });
        let acceptor = tls_acceptor(cert);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accept_state = Arc::clone(&state);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    // A client that rejects our certificate aborts here; that is not an error
                    // of the server.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    state.handshakes.fetch_add(1, Ordering::SeqCst);
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsGitServer {
            runtime: Some(runtime),
            addr,
            state,
        }
    }

    /// `https://127.0.0.1:<port>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!("https://{}/{repo}", self.addr)
    }

    /// Requests that reached the git backend or were refused by the front end.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Completed TLS handshakes (a client refusing our certificate completes none).
    pub fn handshakes(&self) -> usize {
        self.state.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for HttpsGitServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn tls_acceptor(cert: &ServerCert) -> tokio_rustls::TlsAcceptor {
    let chain = rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
}

/// The user of a valid `Authorization: Basic` header naming an accepted account.
fn authenticate(state: &State, req: &Request<Incoming>) -> Option<String> {
    let value = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    state
        .accounts
        .iter()
        .any(|(u, p)| u == user && p == password)
        .then(|| user.to_string())
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let user = authenticate(state, &req);
    let response = match &user {
        None => {
            let mut response = text(StatusCode::UNAUTHORIZED, "authentication required\n");
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
            );
            response
        }
        Some(user) => run_backend(state, user.clone(), req).await,
    };
    state.seen.lock().unwrap().push(Seen {
        method,
        path,
        status: response.status().as_u16(),
        user,
    });
    response
}

/// Run `git http-backend` as a CGI program for `req` (RFC 3875 variables, body on stdin) and
/// turn its CGI response (`Status:` and other headers, blank line, body) into an HTTP response.
async fn run_backend(state: &State, user: String, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return text(StatusCode::BAD_REQUEST, &format!("reading body: {err}\n")),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &state.project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("AUTH_TYPE", "Basic")
        // git-http-backend inflates gzip request bodies itself when told they are gzipped.
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        // Protocol v2 is negotiated through this header.
        .env("GIT_PROTOCOL", header("git-protocol"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("spawn: {err}\n"),
            );
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    // Write the body while the backend writes its answer, so neither pipe can fill up and block.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (read_out, read_err) =
        tokio::join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr));
    let _ = writer.await;
    let status = child.wait().await;
    if read_out.is_err() || read_err.is_err() || !status.map(|s| s.success()).unwrap_or(false) {
        eprintln!(
            "git http-backend failed for {} {}: {}",
            parts.method,
            parts.uri,
            String::from_utf8_lossy(&stderr)
        );
    }
    cgi_response(&stdout)
}

/// Split a CGI response into status, headers and body.
fn cgi_response(output: &[u8]) -> Response<Full<Bytes>> {
    let (head, body) = match find(output, b"\r\n\r\n") {
        Some(at) => (&output[..at], &output[at + 4..]),
        None => match find(output, b"\n\n") {
            Some(at) => (&output[..at], &output[at + 2..]),
            None => return text(StatusCode::BAD_GATEWAY, "CGI response without headers\n"),
        },
    };
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("500");
            *response.status_mut() =
                StatusCode::from_bytes(code.as_bytes()).unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
