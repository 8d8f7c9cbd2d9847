//! Outgoing HTTP from a plugin, through the host's `wasi:http`.
//!
//! Enable the SDK's `http` feature, ask for it in `plugin.toml`
//! (`[capabilities] http = true`), and have the operator grant the hosts
//! (`[grants.<plugin>] http = ["api.example.com"]`). The host refuses
//! every other host, private and loopback addresses unless granted,
//! requests past the job's limits, and slow or oversized responses; a
//! refusal comes back as an error naming the reason.
//!
//! ```no_run
//! # fn main() -> Result<(), coach_plugin_sdk::PluginError> {
//! use coach_plugin_sdk::http;
//! let token = http::secret("HELPDESK_TOKEN").unwrap_or_default();
//! let page: serde_json::Value = http::get("https://acme.example.com/api/v2/tickets?per_page=100")
//!     .bearer(&token)
//!     .send()?
//!     .ok()?
//!     .json()?;
//! # let _ = page; Ok(()) }
//! ```
//!
//! Redirects (301, 302, 303, 307, 308) are followed up to
//! [`MAX_REDIRECTS`] times, each hop a new request that the host checks
//! like the first; a redirect to a host outside the grant fails, one from
//! `https` to `http` is refused, and one to another origin carries none of
//! the headers or the body the caller set.

use crate::PluginError;

/// Redirects [`Request::send`] follows before it gives up.
pub const MAX_REDIRECTS: usize = 5;

/// The largest response body [`Request::send`] keeps; the host's
/// `[limits] http_bytes` bounds all of a job's responses together.
pub const MAX_BODY: usize = 64 << 20;

/// A secret the operator gave this plugin (`[grants.<plugin>.secrets]`),
/// when the manifest asks for it by name (`[capabilities] secrets`).
pub fn secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// An HTTP request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    follow: bool,
}

/// A GET request for `url`.
pub fn get(url: &str) -> Request {
    Request::new("GET", url)
}

/// A POST request for `url`.
pub fn post(url: &str) -> Request {
    Request::new("POST", url)
}

impl Request {
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            follow: true,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `Authorization: Bearer <token>` (nothing when `token` is empty).
    pub fn bearer(self, token: &str) -> Request {
        if token.is_empty() {
            return self;
        }
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body, with its content type.
    pub fn json<T: serde::Serialize>(self, value: &T) -> Result<Request, PluginError> {
        let body = serde_json::to_vec(value)
            .map_err(|e| PluginError::new("bad-request", format!("cannot encode JSON: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Return redirects as they are instead of following them.
    pub fn no_redirects(mut self) -> Request {
        self.follow = false;
        self
    }

    /// Send it and read the whole response.
    pub fn send(self) -> Result<Response, PluginError> {
        let mut req = self;
        for _ in 0..=MAX_REDIRECTS {
            let url = Url::parse(&req.url)?;
            let response = imp::send(&req, &url)?;
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            if !(req.follow && redirect) {
                return Ok(response);
            }
            let Some(location) = response.header("location") else {
                return Ok(response);
            };
            let next = url.join(location)?;
            let to = Url::parse(&next)?;
            if url.https && !to.https {
                return Err(PluginError::new(
                    "http",
                    format!(
                        "{} redirects from https to plain http ({next}): not followed",
                        req.url
                    ),
                ));
            }
            if response.status == 303
                || (response.status != 307 && response.status != 308 && req.method == "POST")
            {
                req.method = "GET".into();
                req.body.clear();
            }
            // Nothing the caller set follows a redirect to another origin:
            // not its credentials, whatever header carries them, nor its body.
            if to.authority != url.authority || to.https != url.https {
                req.headers.clear();
                req.body.clear();
            }
            req.url = next;
        }
        Err(PluginError::new(
            "http",
            format!(
                "more than {MAX_REDIRECTS} redirects, the last to {}",
                req.url
            ),
        ))
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response when its status is 2xx, else an error that quotes the
    /// start of the body.
    pub fn ok(self) -> Result<Response, PluginError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        let code = match self.status {
            401 | 403 => "unauthorized",
            404 => "not-found",
            429 => "rate-limited",
            _ => "http",
        };
        Err(PluginError::new(
            code,
            format!("{} answered {}: {}", self.url, self.status, text.trim()),
        ))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PluginError::new(
                "bad-response",
                format!("{} did not answer JSON: {e}", self.url),
            )
        })
    }
}

/// The parts of an `http` or `https` URL a request needs.
#[derive(Debug, Clone, PartialEq)]
struct Url {
    https: bool,
    authority: String,
    /// Path and query, starting with `/`.
    path: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, PluginError> {
        let bad = |why: &str| PluginError::bad_config(format!("`{url}` is not a URL: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(bad(&format!("scheme `{other}` is not http or https"))),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains(char::is_whitespace)
        {
            return Err(bad("no host, or a host with credentials or spaces"));
        }
        let mut path = rest[end..].to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Ok(Url {
            https,
            authority: authority.to_owned(),
            path,
        })
    }

    /// Resolve a `Location` against this URL.
    fn join(&self, location: &str) -> Result<String, PluginError> {
        let scheme = if self.https { "https" } else { "http" };
        let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
        Ok(
            if lower.starts_with("http://") || lower.starts_with("https://") {
                location.to_owned()
            } else if let Some(rest) = location.strip_prefix("//") {
                format!("{scheme}://{rest}")
            } else if location.starts_with('/') {
                format!("{scheme}://{}{location}", self.authority)
            } else {
                let base = self.path.split('?').next().unwrap_or("/");
                let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
                format!("{scheme}://{}{dir}{location}", self.authority)
            },
        )
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{MAX_BODY, Request, Response, Url};
    use crate::PluginError;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    fn failed(url: &str, e: ErrorCode) -> PluginError {
        let code = match &e {
            ErrorCode::HttpRequestDenied => "denied",
            ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => "timeout",
            _ => "http",
        };
        PluginError::new(code, format!("request to {url} failed: {e:?}"))
    }

    pub(super) fn send(req: &Request, url: &Url) -> Result<Response, PluginError> {
        let entries: Vec<(String, Vec<u8>)> = req
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| PluginError::bad_config(format!("bad header for {}: {e:?}", req.url)))?;
        let out = OutgoingRequest::new(headers);
        let method = match req.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        let bad = |what: &str| PluginError::bad_config(format!("{}: bad {what}", req.url));
        out.set_method(&method).map_err(|_| bad("method"))?;
        out.set_scheme(Some(if url.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|_| bad("scheme"))?;
        out.set_authority(Some(&url.authority))
            .map_err(|_| bad("host"))?;
        out.set_path_with_query(Some(&url.path))
            .map_err(|_| bad("path"))?;
        let body = out.body().map_err(|_| bad("body"))?;
        let future = outgoing_handler::handle(out, None).map_err(|e| failed(&req.url, e))?;
        if !req.body.is_empty() {
            let stream = body.write().map_err(|_| bad("body"))?;
            for chunk in req.body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|e| {
                    PluginError::new("http", format!("sending to {}: {e:?}", req.url))
                })?;
            }
            drop(stream);
        }
        OutgoingBody::finish(body, None).map_err(|e| failed(&req.url, e))?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => return Err(failed(&req.url, e)),
            _ => {
                return Err(PluginError::new(
                    "http",
                    format!("no response from {}", req.url),
                ));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        let incoming = response
            .consume()
            .map_err(|_| PluginError::new("http", format!("no body from {}", req.url)))?;
        let stream = incoming
            .stream()
            .map_err(|_| PluginError::new("http", format!("no body from {}", req.url)))?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_BODY {
                        return Err(PluginError::new(
                            "too-large",
                            format!("{} sent more than {MAX_BODY} bytes", req.url),
                        ));
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let why = wasip2::http::types::http_error_code(&e)
                        .map(|c| format!("{c:?}"))
                        .unwrap_or_else(|| e.to_debug_string());
                    return Err(PluginError::new(
                        "http",
                        format!("reading the response of {}: {why}", req.url),
                    ));
                }
            }
        }
        drop(stream);
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body: bytes,
            url: req.url.clone(),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Request, Response, Url};
    use crate::PluginError;

    /// Outside the sandbox there is no host to check a request: test
    /// plugins that send requests with [`crate::sandbox`].
    pub(super) fn send(req: &Request, _url: &Url) -> Result<Response, PluginError> {
        Err(PluginError::new(
            "unsupported",
            format!(
                "HTTP requests ({}) run only in Coach's sandbox; test them with coach_plugin_sdk::sandbox",
                req.url
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redirects_resolve() {
        let u = Url::parse("https://api.example.com:8443/v2/tickets?page=2#x").unwrap();
        assert!(u.https);
        assert_eq!(u.authority, "api.example.com:8443");
        assert_eq!(u.path, "/v2/tickets?page=2");
        assert_eq!(Url::parse("http://h").unwrap().path, "/");
        assert!(Url::parse("ftp://h/x").is_err());
        assert!(Url::parse("https://user:pw@h/x").is_err());
        assert_eq!(u.join("/a").unwrap(), "https://api.example.com:8443/a");
        assert_eq!(
            u.join("next?p=3").unwrap(),
            "https://api.example.com:8443/v2/next?p=3"
        );
        assert_eq!(u.join("http://other/x").unwrap(), "http://other/x");
        assert_eq!(
            u.join("/a?next=https://x").unwrap(),
            "https://api.example.com:8443/a?next=https://x"
        );
        assert_eq!(
            u.join("//cdn.example.com/x").unwrap(),
            "https://cdn.example.com/x"
        );
    }

    #[test]
    fn outside_the_sandbox_requests_say_where_they_run() {
        let e = get("https://api.example.com/").send().unwrap_err();
        assert!(e.message.contains("sandbox"), "{}", e.message);
    }
}
