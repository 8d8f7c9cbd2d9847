//! Outgoing HTTP for plugins (`wasi:http/outgoing-handler`), behind the
//! operator's allow-list.
//!
//! A request leaves only when the plugin's manifest asks for `http`, the
//! operator's grant names its host, the job is within its request and byte
//! limits, and every address the name resolves to is public — unless the
//! grant's `private_network` covers the name (`true`, or a list naming
//! it). The connection goes to the address
//! that was checked, so a name that resolves differently a moment later
//! (DNS rebinding) cannot steer it elsewhere. Redirects are never followed
//! by the host: a plugin that follows one sends a new request, checked like
//! the first. Each request is bounded in time from connecting to its last
//! byte; requests count against the job's byte limit as they are sent,
//! responses as they arrive.

pub use crate::core::net::{HostPattern, PrivateNetwork, is_public, is_secret_name};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one job may do over HTTP, and what it has done.
#[derive(Debug, Clone)]
pub struct NetPolicy {
    pub plugin: String,
    pub hosts: Vec<HostPattern>,
    pub private_network: PrivateNetwork,
    pub max_requests: u64,
    pub max_bytes: u64,
    pub timeout: Duration,
    /// Requests sent and bytes sent and received, shared with the
    /// connections' tasks.
    pub used: Arc<NetUse>,
    /// Connections open at once, each held from resolving to its last
    /// byte.
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// Connections one job may have open at once.
pub const MAX_CONNECTIONS: usize = 8;

/// Failed requests logged per job; the rest are counted only.
const MAX_LOGGED: u64 = 5;

#[derive(Debug, Default)]
pub struct NetUse {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: AtomicU64,
    /// The first refusal of the job, to explain a failure the plugin
    /// reports in its own words.
    pub refused: std::sync::Mutex<Option<String>>,
}

impl NetUse {
    fn refuse(&self, why: String) -> String {
        let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(why.clone());
        }
        why
    }

    pub fn first_refusal(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl NetPolicy {
    /// The policy of a job whose plugin may make no request at all.
    pub fn none(plugin: &str) -> NetPolicy {
        NetPolicy {
            plugin: plugin.to_owned(),
            hosts: Vec::new(),
            private_network: PrivateNetwork::No,
            max_requests: 0,
            max_bytes: 0,
            timeout: Duration::from_secs(1),
            used: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        }
    }

    /// Check a request's host before anything is resolved; count it.
    pub fn admit(&self, host: &str, port: u16) -> Result<(), String> {
        // Every request counts, refused ones too: a plugin cannot spin on
        // refusals.
        let n = self.used.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_requests {
            return Err(self.used.refuse(format!(
                "plugin `{}` sent more than its {} HTTP requests ([limits] http_requests)",
                self.plugin, self.max_requests
            )));
        }
        if self.hosts.is_empty() {
            return Err(self.used.refuse(format!(
                "plugin `{}` may not send HTTP requests (no host is granted: `[grants.{}] http = [\"{host}\"]`)",
                self.plugin, self.plugin
            )));
        }
        if !self.hosts.iter().any(|p| p.matches(host, port)) {
            return Err(self.used.refuse(format!(
                "plugin `{}` may not reach {host}:{port}; granted: {}",
                self.plugin,
                self.hosts
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// The addresses `host` resolves to that the job may connect to: all
    /// of them must be allowed, or none is used (a name that mixes public
    /// and private addresses is how rebinding attacks start).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| self.used.refuse(format!("cannot resolve {host}: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(self.used.refuse(format!("{host} resolves to no address")));
        }
        // An address granted as such (`http = ["10.0.0.5"]`) is explicit;
        // a name reaches non-public addresses only with `private_network`.
        let literal =
            bare.parse::<IpAddr>().is_ok() && self.hosts.iter().any(|p| p.is_address(bare));
        if !self.private_network.allows(host, port)
            && !literal
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(self.used.refuse(format!(
                "{host} resolves to {}, which is not a public address; the grant of plugin `{}` does not allow private networks for it (`private_network = true`, or a list naming {host})",
                bad.ip(),
                self.plugin
            )));
        }
        Ok(addrs)
    }

    /// Count `n` bytes sent or received; an error once the job is over
    /// its limit.
    pub fn charge(&self, n: u64) -> Result<(), String> {
        let total = self.used.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.max_bytes {
            return Err(self.used.refuse(format!(
                "the requests and responses came to more than {} ([limits] http_bytes)",
                crate::config::units::format_size(self.max_bytes)
            )));
        }
        Ok(())
    }

    /// Count a body's frame; past the limit, the error `over` names it
    /// with, to end the body.
    fn charge_frame(
        &self,
        frame: http_body::Frame<bytes::Bytes>,
        over: fn(Option<u64>) -> HttpError,
    ) -> Result<http_body::Frame<bytes::Bytes>, HttpError> {
        match self.charge(frame_size(&frame)) {
            Ok(()) => Ok(frame),
            Err(_) => Err(over(Some(self.max_bytes))),
        }
    }

    /// Time left for a request started at `start`.
    pub fn left(&self, start: Instant) -> Duration {
        self.timeout.saturating_sub(start.elapsed())
    }
}

/// The `wasi:http` hooks of one job: every request goes through
/// [`NetPolicy`].
pub struct NetHooks {
    pub policy: Arc<NetPolicy>,
    /// When the job's time is up; no request outlives it.
    pub deadline: Instant,
    pub cancel: tokio_util::sync::CancellationToken,
}

type Body = wasmtime_wasi_http::WasiBody;
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Sent = Box<dyn Future<Output = Result<(http::Response<Body>, IoFuture), HttpError>> + Send>;
use wasmtime_wasi_http::Error as HttpError;

impl wasmtime_wasi_http::WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: http::Request<Body>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> Sent {
        let policy = self.policy.clone();
        let deadline = self.deadline;
        let cancel = self.cancel.clone();
        Box::new(async move {
            let plugin = policy.plugin.clone();
            let used = policy.used.clone();
            // Where it went, not what it carried: no query (it may hold a
            // key), no user info, at most 200 characters.
            let uri = request.uri();
            let target = crate::core::text::clip(
                &format!(
                    "{}://{}{}{}",
                    uri.scheme_str().unwrap_or("?"),
                    uri.host().unwrap_or("?"),
                    uri.port().map(|p| format!(":{p}")).unwrap_or_default(),
                    uri.path()
                ),
                200,
            )
            .into_owned();
            let r = tokio::select! {
                r = send(policy, request, options, deadline, cancel.clone()) => r,
                _ = cancel.cancelled() => Err(HttpError::HttpRequestDenied),
            };
            if let Err(e) = &r
                && used.failures.fetch_add(1, Ordering::Relaxed) < MAX_LOGGED
            {
                tracing::warn!(plugin, target, "HTTP request failed: {e}");
            }
            r
        })
    }
}

/// TLS settings with Mozilla's roots, built once.
fn tls() -> Arc<rustls::ClientConfig> {
    static TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    })
    .clone()
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Send one request under `policy`: admitted, resolved to allowed
/// addresses, connected to one of those, bounded in time and bytes.
async fn send(
    policy: Arc<NetPolicy>,
    request: http::Request<Body>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
    job_deadline: Instant,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(http::Response<Body>, IoFuture), HttpError> {
    use http_body_util::BodyExt;
    let start = Instant::now();
    let uri = request.uri().clone();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    policy
        .admit(&host, port)
        .map_err(|_| HttpError::HttpRequestDenied)?;
    // The request's head counts at once (its line too: a path may be
    // long), its body as it is sent.
    let line =
        request.method().as_str().len() + uri.path_and_query().map_or(1, |p| p.as_str().len()) + 16;
    if policy
        .charge(line as u64 + head_size(request.headers()))
        .is_err()
    {
        return Err(HttpError::HttpRequestBodySize(Some(policy.max_bytes)));
    }
    let mut request = request.map(|inner| {
        Outgoing {
            inner,
            policy: policy.clone(),
        }
        .boxed_unsync()
    });
    // The request's time: the operator's limit, the job's deadline, and
    // what the plugin asks for, whichever ends first.
    let mut limit = policy
        .timeout
        .min(job_deadline.saturating_duration_since(start));
    if let Some(o) = options {
        for t in [o.connect_timeout, o.first_byte_timeout]
            .into_iter()
            .flatten()
        {
            if !t.is_zero() {
                limit = limit.min(t.max(Duration::from_millis(1)));
            }
        }
    }
    let ends = tokio::time::Instant::from_std(start + limit);
    let slot = tokio::time::timeout_at(ends, policy.slots.clone().acquire_owned())
        .await
        .map_err(|_| HttpError::ConnectionLimitReached)?
        .map_err(|_| HttpError::ConnectionLimitReached)?;
    let addrs = tokio::time::timeout_at(ends, policy.resolve(&host, port))
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|why| {
            if why.contains("not a public address") {
                HttpError::DestinationIpProhibited
            } else {
                HttpError::DnsError {
                    rcode: Some(why),
                    info_code: None,
                }
            }
        })?;
    let mut last = None;
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout_at(ends, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        }
    }
    let tcp = tcp.ok_or_else(|| match last {
        Some(e) => HttpError::Connect(e),
        None => HttpError::ConnectionRefused,
    })?;
    let stream: Box<dyn Stream> = if https {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = match bare.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(bare.to_owned())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        };
        let tls = tokio_rustls::TlsConnector::from(tls());
        let s = tokio::time::timeout_at(ends, tls.connect(name, tcp))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = tokio::time::timeout_at(
        ends,
        hyper::client::conn::http1::Builder::new()
            .max_buf_size(256 << 10)
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    // Only the path goes on the wire; the `host` header names the server.
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    // The connection runs on its own until the response is read or
    // dropped (the body aborts it then); the request's deadline acts on
    // the response first, so the connection outlives it by a margin.
    // The connection slot goes with it.
    let driver = Driver(tokio::spawn(async move {
        let _slot = slot;
        let _ = tokio::time::timeout_at(ends + Duration::from_secs(5), conn).await;
    }));
    let response = match tokio::time::timeout_at(ends, sender.send_request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else if policy.used.bytes.load(Ordering::Relaxed) > policy.max_bytes {
                // The body went past the job's bytes (hyper reports its
                // own error for a body that failed).
                HttpError::HttpRequestBodySize(Some(policy.max_bytes))
            } else {
                HttpError::Hyper(e)
            });
        }
        Err(_) => {
            policy.used.refuse(format!(
                "{host} did not answer within {limit:?} ([limits] http_timeout or the job's deadline)"
            ));
            return Err(HttpError::ConnectionReadTimeout);
        }
    };
    if policy.charge(head_size(response.headers())).is_err() {
        return Err(HttpError::HttpResponseBodySize(Some(policy.max_bytes)));
    }
    let response = response.map(|incoming| {
        Bounded {
            incoming,
            policy: policy.clone(),
            deadline: Box::pin(tokio::time::sleep_until(ends)),
            limit,
            cancel: Box::pin(cancel.cancelled_owned()),
            _driver: driver,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// About how many bytes a message's head takes on the wire.
fn head_size(headers: &http::HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
        .sum::<u64>()
        + 64
}

/// The bytes a body's frame takes: its data, or its trailers as a head.
fn frame_size(frame: &http_body::Frame<bytes::Bytes>) -> u64 {
    match (frame.data_ref(), frame.trailers_ref()) {
        (Some(d), _) => d.len() as u64,
        (None, Some(t)) => head_size(t),
        (None, None) => 0,
    }
}

/// A request body that counts its bytes against the job's limit as they
/// are sent, and ends in an error past it.
struct Outgoing {
    inner: Body,
    policy: Arc<NetPolicy>,
}

impl http_body::Body for Outgoing {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, HttpError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(
                self.policy
                    .charge_frame(frame, HttpError::HttpRequestBodySize),
            )),
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's task, stopped when dropped (with the request's future
/// or its response body), which frees its slot.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body that counts its bytes against the job's limit and ends
/// in an error at the request's deadline or the job's cancel.
struct Bounded {
    incoming: hyper::body::Incoming,
    policy: Arc<NetPolicy>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    cancel: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    _driver: Driver,
}

impl http_body::Body for Bounded {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, HttpError>>> {
        use std::task::Poll;
        if self.cancel.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(HttpError::ConnectionTerminated)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let why = format!(
                "a response took longer than {:?} to arrive ([limits] http_timeout or the job's deadline)",
                self.limit
            );
            self.policy.used.refuse(why);
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        match std::pin::Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(
                self.policy
                    .charge_frame(frame, HttpError::HttpResponseBodySize),
            )),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_bodies_count_against_the_jobs_bytes() {
        use http_body_util::BodyExt;
        let mut p = NetPolicy::none("src");
        p.max_bytes = 10;
        let p = Arc::new(p);
        let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, HttpError>> =
            ["abcd", "efgh", "ijkl"]
                .into_iter()
                .map(|c| Ok(http_body::Frame::data(bytes::Bytes::from(c))))
                .collect();
        let inner: Body =
            http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
        let mut body = Outgoing {
            inner,
            policy: p.clone(),
        };
        // 8 bytes pass; the third chunk takes the job past its 10.
        for _ in 0..2 {
            assert!(body.frame().await.unwrap().is_ok());
        }
        assert!(matches!(
            body.frame().await.unwrap(),
            Err(HttpError::HttpRequestBodySize(Some(10)))
        ));
        assert_eq!(p.used.bytes.load(Ordering::Relaxed), 12);
        // Trailers count as a head would.
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-pad", http::HeaderValue::from_static("abcdefgh"));
        let frame = http_body::Frame::<bytes::Bytes>::trailers(trailers);
        assert_eq!(frame_size(&frame), 5 + 8 + 4 + 64);
        assert!(
            p.used
                .first_refusal()
                .unwrap()
                .contains("[limits] http_bytes")
        );
    }

    #[tokio::test]
    async fn private_addresses_only_for_the_names_the_grant_lists() {
        let mut p = NetPolicy::none("src");
        p.hosts = vec![
            HostPattern::parse("localhost").unwrap(),
            HostPattern::parse("api.example.com").unwrap(),
        ];
        let refused = |r: Result<Vec<SocketAddr>, String>| r.unwrap_err();
        assert!(refused(p.resolve("localhost", 80).await).contains("not a public address"));
        p.private_network =
            PrivateNetwork::Hosts(vec![HostPattern::parse("api.example.com").unwrap()]);
        assert!(refused(p.resolve("localhost", 80).await).contains("a list naming localhost"));
        p.private_network = PrivateNetwork::Hosts(vec![HostPattern::parse("localhost").unwrap()]);
        let addrs = p.resolve("localhost", 80).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn requests_are_counted_and_refusals_remembered() {
        let mut p = NetPolicy::none("src");
        p.max_requests = 4;
        let refused = |r: Result<(), String>| r.unwrap_err();
        assert!(refused(p.admit("x.com", 443)).contains("no host is granted"));
        p.hosts = vec![HostPattern::parse("x.com").unwrap()];
        p.admit("x.com", 443).unwrap();
        assert!(refused(p.admit("y.com", 443)).contains("may not reach y.com"));
        p.admit("x.com", 443).unwrap();
        // Refused requests count too: this is the fifth.
        assert!(refused(p.admit("x.com", 443)).contains("more than its 4"));
        assert_eq!(p.used.requests.load(Ordering::Relaxed), 5);
        assert!(
            p.used
                .first_refusal()
                .unwrap()
                .contains("no host is granted")
        );
    }
}
