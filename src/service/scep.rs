//! The SCEP routes: `GET|POST /scep/<server path>[/anything]?operation=…[&message=…]`, handed
//! to `protocols::scep::server` on the blocking pool (the CA's key may be on a token). Bodies
//! and `message=` are bounded in size, and a body in time (the connection's [`BodyTimeout`],
//! `header-timeout`: 408 after it); every transaction is logged in one line (never a
//! challenge).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Base64Url, Encoding};
use percent_encoding::percent_decode_str;

use super::conn::BodyTimeout;
use super::{blocking, ServiceBackend};
use crate::protocols::scep::message::MessageLimits;
use crate::protocols::scep::server::{handle, Reply};

type Backend = Arc<dyn ServiceBackend>;

/// The largest pkiMessage accepted (POST body, or `message=` decoded).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;
/// How long a body may take when the connection did not say (`header-timeout`'s default).
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The value of `key` in a raw query string, percent-decoded (`+` stays `+`: base64 sent
/// without URL-encoding keeps its plus signs).
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(key)
            .then(|| percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// A base64 `message=` as clients send it: standard or URL-safe alphabet, with or without
/// padding, line breaks allowed.
fn decode_message(value: &str) -> Option<Vec<u8>> {
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() > MAX_MESSAGE / 3 * 4 + 4 {
        return None;
    }
    let unpadded = compact.trim_end_matches('=');
    let padded = {
        let mut s = unpadded.to_owned();
        while s.len() % 4 != 0 {
            s.push('=');
        }
        s
    };
    Base64::decode_vec(&padded)
        .or_else(|_| Base64Url::decode_vec(&padded))
        .ok()
}

/// `GET` and `POST` under `/scep/`.
pub(crate) async fn scep(State(backend): State<Backend>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let operation = query_value(&query, "operation");
    let message = if method == Method::POST {
        let BodyTimeout(within) = request
            .extensions()
            .get::<BodyTimeout>()
            .copied()
            .unwrap_or(BodyTimeout(DEFAULT_BODY_TIMEOUT));
        let body = axum::body::to_bytes(request.into_body(), MAX_MESSAGE);
        match tokio::time::timeout(within, body).await {
            Ok(Ok(b)) => Some(b.to_vec()),
            Ok(Err(_)) => return text(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n"),
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the message did not arrive in time\n",
                )
            }
        }
    } else if !operation
        .as_deref()
        .is_some_and(|o| o.eq_ignore_ascii_case("PKIOperation"))
    {
        // GetCACert, GetCACaps, GetNextCACert: `message=` is a CA identifier (certmonger
        // sends "0"); one server answers one CA, so it is not needed.
        None
    } else {
        match query_value(&query, "message") {
            Some(v) => match decode_message(&v) {
                Some(m) if m.len() <= MAX_MESSAGE => Some(m),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "message= is not base64 of at most 64 KiB\n",
                    )
                }
            },
            None => None,
        }
    };
    let result = blocking(&backend, "answering SCEP", move |b| {
        b.scep_ca()
            .map(|ca| {
                handle(
                    ca,
                    &path,
                    operation.as_deref(),
                    message.as_deref(),
                    &MessageLimits::default(),
                )
            })
            .map(|reply| (path, reply))
    })
    .await;
    match result {
        Ok(Some((path, reply))) => respond(&path, reply),
        Ok(None) => text(StatusCode::NOT_FOUND, "not found\n"),
        Err(e) => {
            tracing::error!("scep: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
    }
}

fn respond(path: &str, reply: Reply) -> Response {
    match reply.status {
        503 => tracing::warn!("scep {path}: {}", reply.log),
        500.. => tracing::error!("scep {path}: {}", reply.log),
        400.. => tracing::debug!("scep {path}: {}", reply.log),
        _ => tracing::info!("scep {path}: {}", reply.log),
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_messages() {
        let q = "operation=PKIOperation&message=AAEC%2BA%3D%3D";
        assert_eq!(query_value(q, "operation").as_deref(), Some("PKIOperation"));
        assert_eq!(query_value(q, "OPERATION").as_deref(), Some("PKIOperation"));
        let m = query_value(q, "message").unwrap();
        assert_eq!(m, "AAEC+A==");
        assert_eq!(decode_message(&m).unwrap(), vec![0, 1, 2, 0xf8]);
        // not URL-encoded: '+' kept; line breaks and missing padding tolerated
        assert_eq!(decode_message("AAEC+A").unwrap(), vec![0, 1, 2, 0xf8]);
        assert_eq!(decode_message("AAEC\n+A==").unwrap(), vec![0, 1, 2, 0xf8]);
        assert_eq!(decode_message("AAEC-A").unwrap(), vec![0, 1, 2, 0xf8]);
        assert!(decode_message("not base64!").is_none());
        assert!(query_value("a=b", "message").is_none());
    }
}
