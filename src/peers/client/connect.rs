//! Connections to peers: TCP (with the connect timeout), then TLS when
//! the pool has it, then the HTTP/1.1 handshake; for a calling thread's
//! kept connections ([`connect()`]) and for the pool's hyper-util client
//! ([`Connector`], whose connections are [`MaybeTls`]).

use super::*;

/// A connection's request side and its socket's descriptor.
pub(super) type Conn = (conn1::SendRequest<Full<Bytes>>, Sock);

/// Opens a connection for `call` (TLS when the pool has it) and starts its
/// hyper connection task on the current runtime.
pub(super) async fn connect(call: &Call, cfg: &ClientConfig) -> Result<Conn, PeerError> {
    let addr: &str = &call.connect_to;
    // Resolve here, on this (blocking) thread: a host name lookup must not
    // need a blocking pool. Loopback and IP addresses resolve at once.
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| PeerError::Failed(format!("resolving {addr}: {e}")))?
        .collect();
    let stream =
        match tokio::time::timeout(cfg.connect_timeout, tokio::net::TcpStream::connect(&addrs[..])).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(PeerError::Failed(format!("connecting to {addr}: {e}"))),
            Err(_) => {
                return Err(PeerError::Failed(format!(
                    "connecting to {addr}: timed out after {:?}",
                    cfg.connect_timeout
                )))
            }
        };
    let _ = stream.set_nodelay(true);
    let fd = {
        use std::os::fd::AsRawFd;
        stream.as_raw_fd()
    };
    let tx = match &cfg.tls {
        None => start_http(stream, addr).await?,
        Some(tls) => {
            let stream = tls_connect(tls, &call.host, stream, cfg.connect_timeout)
                .await
                .map_err(|e| PeerError::Failed(format!("connecting to {addr}: {e}")))?;
            start_http(stream, addr).await?
        }
    };
    Ok((
        tx,
        Sock {
            fd,
            id: socket_id(fd),
        },
    ))
}

/// The HTTP/1.1 handshake on a new connection; its connection task is
/// spawned on the current runtime.
async fn start_http<I>(io: I, addr: &str) -> Result<conn1::SendRequest<Full<Bytes>>, PeerError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = conn1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| PeerError::Failed(format!("handshake with {addr}: {}", describe(&e))))?;
    // Runs whenever this thread is inside block_on, i.e. during its own
    // requests; it ends when the connection closes or `tx` is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// The TLS handshake with a peer whose URL's host is `host`, within
/// `timeout`, with the configuration in use now (see `tls`: a rotated
/// certificate is used from the next connection on). The peer's
/// certificate must name `tls_server_name` if the pool has one, else
/// `host`.
async fn tls_connect(
    tls: &Tls,
    host: &str,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = tls.peer_name(host)?;
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("TLS handshake: {}", describe(&e))),
        Err(_) => Err(format!("TLS handshake: timed out after {timeout:?}")),
    }
}

/// The pooled client's connector: hyper-util's TCP connector, then TLS
/// when the pool has it.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(super) http: HttpConnector,
    pub(super) tls: Option<Arc<Tls>>,
    pub(super) connect_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeTls;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<MaybeTls, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let timeout = self.connect_timeout;
        let host = uri.host().unwrap_or_default().to_string();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?;
            match tls {
                None => Ok(MaybeTls::Plain(tcp)),
                Some(tls) => {
                    let s = tls_connect(&tls, &host, tcp.into_inner(), timeout).await?;
                    Ok(MaybeTls::Tls(Box::new(TokioIo::new(s))))
                }
            }
        })
    }
}

/// A pooled connection, plain or TLS.
pub(crate) enum MaybeTls {
    Plain(TokioIo<tokio::net::TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
}

impl hyper_util::client::legacy::connect::Connection for MaybeTls {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        match self {
            MaybeTls::Plain(s) => s.connected(),
            MaybeTls::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for MaybeTls {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => std::pin::Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for MaybeTls {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => std::pin::Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => std::pin::Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => std::pin::Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
