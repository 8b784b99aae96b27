//! Hostile clients: slow ones (slowloris: many TLS connections trickling
//! headers or bodies, or never finishing the handshake), too many at once,
//! and malformed HTTP. Each gets a 4xx or is cut off by a timeout; the
//! webhook does not crash, keeps answering real AdmissionReviews while it
//! happens, and its memory stays bounded.
//!
//! These tests talk to the webhook's HTTPS port directly, as the API server
//! does, so they run a webhook process of their own (the real binary, the
//! default policy, a fresh audit log) with short timeouts, rather than the
//! cluster-wide one the other tests register.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitwarden_tests::admission_review::{AdmissionReview, managed_deployment};
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource, pem_to_der};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a slow client may hold on before the test calls it a failure;
/// the webhook under test cuts them off after 3-4 s.
const SLOW_CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// The webhook's memory must stay below this with every slow client
/// connected (it idles at about 10 MiB).
const RSS_CAP_MIB: f64 = 200.0;

/// A gitwarden-webhook process of this test's own (the built-in policy, no
/// cluster), with a client that opens a fresh connection per request: a
/// pooled one would hold one of the webhook's connection permits between
/// requests.
struct Webhook {
    process: LoopbackWebhook,
    ca_der: Vec<u8>,
    http: reqwest::Client,
}

impl Webhook {
    async fn start(extra: &[&str]) -> Webhook {
        let process = LoopbackWebhook::launch(PolicySource::BuiltIn)
            .args(extra)
            .start()
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(process.ca_pem().as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Webhook {
            ca_der: pem_to_der(process.ca_pem()),
            process,
            http,
        }
    }

    fn port(&self) -> u16 {
        self.process.port()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.url)
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// VmRSS and VmHWM (peak) in MiB, from /proc.
    fn rss_mib(&self) -> (f64, f64) {
        let pid = self.process.pid().expect("the webhook runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .unwrap()
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn assert_alive(&self) {
        assert!(
            self.process.is_running(),
            "gitwarden-webhook exited:\n{}",
            self.log()
        );
    }

    /// A TLS connection to the webhook, handshake done.
    async fn tls(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone().into()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", self.port())).await?;
        connector
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
    }

    /// POSTs a review to /validate; the response's `allowed`.
    async fn review(&self, body: &Value) -> Result<bool, String> {
        let resp = self
            .http
            .post(self.url("/validate"))
            .json(body)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let review: Value = resp.json().await.map_err(|e| e.to_string())?;
        review["response"]["allowed"]
            .as_bool()
            .ok_or_else(|| format!("no verdict in {review}"))
    }
}

/// An UPDATE of a gitwarden-managed Deployment: `alice` is denied (and
/// audited), the deployment controller is allowed.
fn review(uid: usize, user: &str) -> Value {
    AdmissionReview::update(managed_deployment("shop", "web", 2))
        .uid(format!("hostile-{uid}"))
        .by(user, &["system:authenticated"])
        .to_json()
}

const CONTROLLER: &str = "system:serviceaccount:kube-system:deployment-controller";

/// How a slow client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    /// The server answered with this HTTP status.
    Status(u16),
    /// The server closed (or reset) the connection without an answer.
    Closed,
    /// Still open at the deadline: the server let it hang.
    Hung,
    /// The client could not even connect.
    ConnectFailed(String),
}

/// The status code of the first HTTP response line in `bytes`, if any.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Writes `head`, then one byte of `drip` every `every`, until the server
/// answers or closes, or the deadline passes.
async fn trickle<S>(stream: S, head: Vec<u8>, drip: u8, every: Duration) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let deadline = tokio::time::sleep(SLOW_CLIENT_DEADLINE);
    tokio::pin!(deadline);
    if writer.write_all(&head).await.is_err() {
        return Ended::Closed;
    }
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut deadline => return Ended::Hung,
            read = reader.read(&mut buf) => {
                return match read {
                    Ok(n) if n > 0 => status_of(&buf[..n]).map_or(Ended::Closed, Ended::Status),
                    _ => Ended::Closed,
                };
            }
            _ = tick.tick() => {
                if writer.write_all(&[drip]).await.is_err() || writer.flush().await.is_err() {
                    return Ended::Closed;
                }
            }
        }
    }
}

/// Connects over TCP and never starts TLS.
async fn silent_tcp(port: u16) -> Ended {
    let mut tcp = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(t) => t,
        Err(e) => return Ended::ConnectFailed(e.to_string()),
    };
    let mut buf = [0u8; 64];
    match tokio::time::timeout(SLOW_CLIENT_DEADLINE, tcp.read(&mut buf)).await {
        Ok(_) => Ended::Closed,
        Err(_) => Ended::Hung,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_500_connections_is_cut_off_while_real_reviews_are_answered_in_bounded_memory()
 {
    let webhook = Webhook::start(&[
        "--header-read-timeout",
        "3s",
        "--tls-handshake-timeout",
        "3s",
        "--request-timeout",
        "4s",
    ])
    .await;
    let (idle_rss, _) = webhook.rss_mib();
    let webhook = Arc::new(webhook);
    let (port, every) = (webhook.port(), Duration::from_millis(250));

    // 200 trickle header bytes, 200 send headers and trickle a 100 kB body,
    // 100 never start the TLS handshake.
    let mut slow = Vec::new();
    for i in 0..500 {
        let webhook = webhook.clone();
        slow.push(tokio::spawn(async move {
            let kind = match i % 5 {
                0 | 1 => "headers",
                2 | 3 => "body",
                _ => "handshake",
            };
            let ended = match kind {
                "handshake" => silent_tcp(port).await,
                _ => match webhook.tls().await {
                    Err(e) => Ended::ConnectFailed(e.to_string()),
                    Ok(tls) if kind == "headers" => {
                        let head =
                            b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
                        trickle(tls, head, b'a', every).await
                    }
                    Ok(tls) => {
                        let head = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                                Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
                            .to_vec();
                        trickle(tls, head, b' ', every).await
                    }
                },
            };
            (kind, ended)
        }));
    }
    // Let every slow client connect and start dripping.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Meanwhile, real reviews are decided as usual.
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    for uid in 0..40 {
        let (user, expect_allowed) = if uid % 2 == 0 {
            ("alice", false)
        } else {
            (CONTROLLER, true)
        };
        let started = Instant::now();
        let allowed = webhook.review(&review(uid, user)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            allowed,
            Ok(expect_allowed),
            "review {uid} by {user} during the slowloris"
        );
        answered += 1;
    }
    let (rss, peak) = webhook.rss_mib();
    assert!(
        peak < RSS_CAP_MIB,
        "RSS peaked at {peak:.1} MiB with 500 slow clients (cap {RSS_CAP_MIB} MiB)"
    );

    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for task in slow {
        let (kind, ended) = task.await.unwrap();
        match (&ended, kind) {
            (Ended::Hung, _) | (Ended::ConnectFailed(_), _) => {
                panic!("a slow {kind} client ended as {ended:?}")
            }
            (Ended::Status(code), _) => assert!(
                (400..500).contains(code),
                "a slow {kind} client got HTTP {code}"
            ),
            (Ended::Closed, _) => {}
        }
        *outcomes.entry(format!("{kind}: {ended:?}")).or_default() += 1;
    }
    webhook.assert_alive();
    assert_eq!(webhook.review(&review(99, CONTROLLER)).await, Ok(true));
    eprintln!(
        "slowloris: 500 slow clients ended as {outcomes:?}; {answered} real reviews answered \
         meanwhile (slowest {slowest:?}); RSS {idle_rss:.1} MiB idle, {rss:.1} MiB under attack, peak {peak:.1} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_service_resumes_when_they_go() {
    let webhook = Webhook::start(&["--max-connections", "20"]).await;
    // The readiness probe's connection (not pooled) must be gone first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    let refused = loop {
        let attempt = tokio::time::timeout(Duration::from_secs(10), webhook.tls())
            .await
            .expect("a connection was neither served nor closed");
        match attempt {
            Ok(tls) if held.len() < 40 => held.push(tls),
            Ok(_) => panic!("40 connections open under --max-connections 20"),
            Err(e) => break e,
        }
    };
    // The 21st connection is closed before it gets a TLS session.
    assert_eq!(
        held.len(),
        20,
        "refused after {} connections: {refused}",
        held.len()
    );
    drop(held);
    // Permits come back as soon as the held connections close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match webhook.review(&review(1, CONTROLLER)).await {
            Ok(allowed) => {
                assert!(allowed);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no service after the held connections closed: {e}"),
        }
    }
    webhook.assert_alive();
    assert!(
        webhook.log().contains("connection limit reached"),
        "{}",
        webhook.log()
    );
}

/// Sends `request` raw over TLS (optionally closing the write side after
/// it) and returns how the server answered.
async fn raw(webhook: &Webhook, request: &[u8], half_close: bool) -> Ended {
    let mut tls = webhook.tls().await.unwrap();
    if tls.write_all(request).await.is_err() {
        return Ended::Closed;
    }
    if half_close {
        let _ = tls.shutdown().await;
    }
    let mut buf = vec![0u8; 8192];
    match tokio::time::timeout(SLOW_CLIENT_DEADLINE, tls.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => status_of(&buf[..n]).map_or(Ended::Closed, Ended::Status),
        Ok(_) => Ended::Closed,
        Err(_) => Ended::Hung,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_oversized_and_garbage_http_gets_4xx_or_a_closed_connection() {
    let webhook = Webhook::start(&["--request-timeout", "3s"]).await;
    let post = |headers: &str, body: &[u8]| {
        let mut request = format!("POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}\r\n").into_bytes();
        request.extend_from_slice(body);
        request
    };
    let nested = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"AdmissionReview\",\"request\":{{\"object\":{{\"spec\":{}}}}}}}",
        "[".repeat(200_000)
    );
    // (case, request, close the write side after it, the status it must get)
    let cases: Vec<(&str, Vec<u8>, bool, Option<u16>)> = vec![
        // A body cut short: the client promised 5,000 bytes, sent 40, and hung up.
        (
            "truncated body",
            post("Content-Length: 5000\r\n", &[b'{'; 40]),
            true,
            Some(400),
        ),
        // A length over the limit is refused with 413 before the body is read.
        (
            "declared oversize",
            post("Content-Length: 100000000\r\n", b"{"),
            false,
            Some(413),
        ),
        // Nesting far beyond any real object: refused, not a stack overflow.
        (
            "deep nesting",
            post(
                &format!("Content-Length: {}\r\n", nested.len()),
                nested.as_bytes(),
            ),
            false,
            Some(400),
        ),
        // A chunked body whose chunk sizes are not hex.
        (
            "broken chunking",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"zz\r\nhello\r\n0\r\n\r\n",
            ),
            false,
            None,
        ),
        // 200 kB of headers.
        (
            "huge headers",
            format!(
                "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            )
            .into_bytes(),
            false,
            None,
        ),
        // Not HTTP at all.
        (
            "garbage",
            vec![0x16, 0x03, 0x01, 0xff, 0x00, 0x42, 0x13, 0x37],
            false,
            None,
        ),
        // A request line with no end.
        ("endless request line", vec![b'G'; 100_000], false, None),
    ];
    for (name, request, half_close, expected) in cases {
        let ended = raw(&webhook, &request, half_close).await;
        eprintln!("{name}: {ended:?}");
        if let Some(code) = expected {
            assert_eq!(ended, Ended::Status(code), "{name}");
        }
        match ended {
            Ended::Status(code) => assert!((400..500).contains(&code), "{name}: HTTP {code}"),
            Ended::Closed => {}
            other => panic!("{name}: {other:?}"),
        }
        webhook.assert_alive();
    }
    assert_eq!(webhook.review(&review(1, "alice")).await, Ok(false));
    assert_eq!(webhook.review(&review(2, CONTROLLER)).await, Ok(true));
}
