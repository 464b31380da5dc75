//! authgate's own endpoints, resolved once from the normalised path, with
//! the listeners that serve each. Front ends match on [`Endpoint`], never on
//! path strings.

use super::Listener;

/// One of authgate's own endpoints. Everything else is the app's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /ping`: liveness, always 200 (`listen` only).
    Ping,
    /// `GET /ready`: readiness (`listen` only).
    Ready,
    /// `/oauth2/start`: begins a login (every listener).
    Start,
    /// `/oauth2/callback`: the IdP's redirect back (every listener).
    Callback,
    /// `/oauth2/sign_out`: ends the session (every listener).
    SignOut,
    /// `/oauth2/auth`: nginx `auth_request` / forward auth (`listen` only).
    Auth,
    /// `/oauth2/userinfo`: the identity as JSON (`listen` only).
    Userinfo,
    /// `POST /oauth2/backchannel_logout`: OIDC Back-Channel Logout 1.0
    /// (`listen` only). It needs the request body, so the proxy front end
    /// serves it itself through `Gate::backchannel_logout`.
    BackchannelLogout,
}

impl Endpoint {
    /// The endpoint a [normalised](super::path::normalize) path names on
    /// `listener`, or `None` when the request is the app's. On the ext_authz
    /// listeners only the login flow's endpoints are authgate's: the app's
    /// own `/ping` or `/oauth2/auth` is decided like any other path (the
    /// contract's endpoint table).
    pub fn resolve(path: &str, listener: Listener) -> Option<Endpoint> {
        let endpoint = match path {
            "/oauth2/start" => Endpoint::Start,
            "/oauth2/callback" => Endpoint::Callback,
            "/oauth2/sign_out" => Endpoint::SignOut,
            "/ping" => Endpoint::Ping,
            "/ready" => Endpoint::Ready,
            "/oauth2/auth" => Endpoint::Auth,
            "/oauth2/userinfo" => Endpoint::Userinfo,
            "/oauth2/backchannel_logout" => Endpoint::BackchannelLogout,
            _ => return None,
        };
        endpoint.served_on(listener).then_some(endpoint)
    }

    /// Whether `listener` serves this endpoint.
    pub fn served_on(self, listener: Listener) -> bool {
        match self {
            Endpoint::Start | Endpoint::Callback | Endpoint::SignOut => true,
            Endpoint::Ping
            | Endpoint::Ready
            | Endpoint::Auth
            | Endpoint::Userinfo
            | Endpoint::BackchannelLogout => listener == Listener::Proxy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_flow_is_served_everywhere_the_rest_on_listen_only() {
        for l in [
            Listener::Proxy,
            Listener::ExtAuthzHttp,
            Listener::ExtAuthzGrpc,
        ] {
            assert_eq!(Endpoint::resolve("/oauth2/start", l), Some(Endpoint::Start));
            assert_eq!(
                Endpoint::resolve("/oauth2/callback", l),
                Some(Endpoint::Callback)
            );
            assert_eq!(
                Endpoint::resolve("/oauth2/sign_out", l),
                Some(Endpoint::SignOut)
            );
            let listen_only = [
                "/ping",
                "/ready",
                "/oauth2/auth",
                "/oauth2/userinfo",
                "/oauth2/backchannel_logout",
            ];
            for p in listen_only {
                assert_eq!(
                    Endpoint::resolve(p, l).is_some(),
                    l == Listener::Proxy,
                    "{p} on {l:?}"
                );
            }
        }
        for app in [
            "/",
            "/oauth2",
            "/oauth2/",
            "/ping/",
            "/oauth2/startx",
            "/PING",
        ] {
            assert_eq!(Endpoint::resolve(app, Listener::Proxy), None, "{app}");
        }
    }
}
