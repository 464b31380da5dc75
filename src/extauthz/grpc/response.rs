//! Decision → wire: a `Reply` as a `denied_response`, `UpstreamEdits` as an
//! `ok_response`, with the gRPC code Envoy logs.

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue as PbHeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::authz::{Outcome, Reply, UpstreamEdits};

/// `google.rpc.Code` OK: Envoy allows.
pub const OK: i32 = 0;
/// `google.rpc.Code` INVALID_ARGUMENT: a request authgate cannot decide on (400).
pub const INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code` PERMISSION_DENIED: authenticated but not authorized (403).
pub const PERMISSION_DENIED: i32 = 7;
/// `google.rpc.Code` UNAVAILABLE: a dependency (IdP, Redis) is down (5xx).
pub const UNAVAILABLE: i32 = 14;
/// `google.rpc.Code` UNAUTHENTICATED: a login redirect or a 401.
pub const UNAUTHENTICATED: i32 = 16;

/// Code 0: identity headers overwrite whatever the client sent, the unset
/// ones (and other spellings seen) are removed, a refreshed session's
/// cookies go to the client.
pub(super) fn allow(edits: UpstreamEdits) -> CheckResponse {
    let headers = edits
        .sets_with_cookie()
        .iter()
        .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    let headers_to_remove = edits
        .removals_after_set()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let response_headers_to_add = edits
        .client_cookies
        .iter()
        .map(|c| {
            option(
                &http::header::SET_COOKIE,
                c,
                HeaderAppendAction::AppendIfExistsOrAdd,
            )
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: OK,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            response_headers_to_add,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn option(name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// The gRPC code for a deny: what Envoy logs, while the client gets our
/// `denied_response` as it is.
fn deny_code(reply: &Reply) -> i32 {
    match (reply.outcome, reply.status) {
        (Outcome::Forbidden, _) | (_, StatusCode::FORBIDDEN) => PERMISSION_DENIED,
        (_, s) if s.is_server_error() => UNAVAILABLE,
        (_, StatusCode::BAD_REQUEST | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE) => {
            INVALID_ARGUMENT
        }
        _ => UNAUTHENTICATED,
    }
}

/// A deny carrying our whole reply: status, each header (each `Set-Cookie`
/// its own option, appended), body.
pub(super) fn deny(reply: Reply) -> CheckResponse {
    let code = deny_code(&reply);
    let headers = reply
        .headers
        .iter()
        .map(|(n, v)| {
            let action = if n == http::header::SET_COOKIE {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            option(n, v, action)
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(reply.status.as_u16()),
            }),
            headers,
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        })),
        ..Default::default()
    }
}

/// A deny with no reply behind it: a bare status and `Cache-Control: no-store`.
pub(super) fn deny_plain(code: i32, http_status: u16, message: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: message.to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(http_status),
            }),
            headers: vec![option(
                &http::header::CACHE_CONTROL,
                &HeaderValue::from_static("no-store"),
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            )],
            body: String::new(),
        })),
        ..Default::default()
    }
}
