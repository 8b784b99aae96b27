//! Accepting connections with the limits that keep slow or hostile clients
//! from exhausting the webhook: a cap on open connections, and timeouts on
//! the TLS handshake and on reading request headers.
//!
//! Request-level limits (body size, time to answer) are in [`crate::server`];
//! these are the ones a client hits before any request exists. Without them a
//! slowloris (many connections, each trickling a byte now and then) holds a
//! task, a socket and a TLS session per connection for as long as it likes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits on connections, before and between requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; one more is closed at once. The API server
    /// keeps a small pool of keep-alive connections per webhook, so the
    /// default leaves ample room while bounding memory.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request's headers, from connecting (or
    /// from the end of the previous request on a keep-alive connection).
    /// Idle keep-alive connections are closed after it too.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` over TLS on `listen` under `limits` until `handle` shuts it
/// down.
pub async fn serve(
    listen: SocketAddr,
    tls: RustlsConfig,
    app: Router,
    handle: Handle<SocketAddr>,
    limits: ConnectionLimits,
) -> io::Result<()> {
    let acceptor = RustlsAcceptor::new(tls)
        .handshake_timeout(limits.tls_handshake_timeout)
        .acceptor(CappedAcceptor::new(limits.max_connections));
    let listener = bind_with_backlog(listen, limits.max_connections)?;
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(acceptor)
        .handle(handle)
        .first_request_timeout(limits.header_read_timeout);
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    server.serve(app.into_make_service()).await
}

/// Binds `listen` with a kernel accept queue as deep as the connection cap.
///
/// Tokio (like the standard library) listens with a backlog of 128. When more
/// connections arrive at once than the queue holds (an API server reopening
/// its pool after a restart, or a burst of clients), the kernel drops the
/// overflow: a dropped SYN stalls that caller for a full second of
/// retransmission, a dropped final ACK leaves a connection the client thinks
/// is open and the webhook never sees. The kernel caps the queue at
/// `net.core.somaxconn`.
fn bind_with_backlog(listen: SocketAddr, backlog: usize) -> io::Result<tokio::net::TcpListener> {
    let socket = match listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(listen)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    socket.listen(u32::try_from(backlog.max(1)).unwrap_or(u32::MAX))
}

/// Admits a connection only while fewer than `max` are open; the permit
/// travels with the stream and is returned when the connection closes.
/// Also sets TCP_NODELAY on every connection it admits.
#[derive(Clone)]
struct CappedAcceptor {
    permits: Arc<Semaphore>,
    max: usize,
    refused: Arc<AtomicU64>,
}

impl CappedAcceptor {
    fn new(max: usize) -> Self {
        CappedAcceptor {
            permits: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for CappedAcceptor {
    type Stream = Capped<TcpStream>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        // One small request, one small answer: without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs stall a response now and then by 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let result = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((
                Capped {
                    inner: stream,
                    _permit: permit,
                },
                service,
            )),
            Err(_) => {
                // Dropping the stream closes it. Log the first refusal and
                // then every thousandth, so an attack cannot flood the log.
                let refused = self.refused.fetch_add(1, Ordering::Relaxed);
                if refused.is_multiple_of(1000) {
                    tracing::warn!(
                        max_connections = self.max,
                        refused_so_far = refused + 1,
                        "connection limit reached: closing new connections"
                    );
                }
                Err(io::Error::other("connection limit reached"))
            }
        };
        std::future::ready(result)
    }
}

/// A stream that holds a connection permit for as long as it lives.
struct Capped<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn connected_pair() -> TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, _server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        client.unwrap()
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_default_backlog_waits_in_the_accept_queue() {
        // 300 connections and nobody accepting: with tokio's default backlog
        // of 128 the kernel would drop the rest; with the cap as backlog,
        // every connect completes and every one is accepted afterwards.
        let listener = bind_with_backlog("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..300 {
            clients.push(
                tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                    .await
                    .expect("connect completes without a retransmitted SYN")
                    .unwrap(),
            );
        }
        for _ in 0..300 {
            tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .expect("every queued connection is accepted")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_refused_until_one_closes() {
        let acceptor = CappedAcceptor::new(2);
        let first = acceptor.accept(connected_pair().await, ()).await.unwrap();
        let _second = acceptor.accept(connected_pair().await, ()).await.unwrap();
        assert!(acceptor.accept(connected_pair().await, ()).await.is_err());
        drop(first);
        assert!(acceptor.accept(connected_pair().await, ()).await.is_ok());
    }
}
