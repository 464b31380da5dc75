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
    /// `/oauth2/sign_in`: oauth2-proxy's sign-in page, which with a single
    /// provider and `skip-provider-button` (authgate's case) begins the
    /// login like [`Endpoint::Start`], so oauth2-proxy's documented nginx and
    /// Caddy configurations (`/oauth2/sign_in?rd=…`) work unchanged.
    /// `listen` only: the contract makes no path but `start`, `callback`
    /// and `sign_out` special on the ext_authz listeners, and those
    /// configurations talk to `listen`.
    SignIn,
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
    /// `GET /oauth2/jwks.json`: the public keys of the signed identity
    /// assertion (`listen` only, no authentication).
    Jwks,
}

/// Every endpoint, in the order paths are looked up.
const ALL: [Endpoint; 10] = [
    Endpoint::Start,
    Endpoint::SignIn,
    Endpoint::Callback,
    Endpoint::SignOut,
    Endpoint::Ping,
    Endpoint::Ready,
    Endpoint::Auth,
    Endpoint::Userinfo,
    Endpoint::BackchannelLogout,
    Endpoint::Jwks,
];

impl Endpoint {
    /// The endpoint a [normalised](super::path::normalize) path names on
    /// `listener`, or `None` when the request is the app's. On the ext_authz
    /// listeners only the login flow's endpoints are authgate's: the app's
    /// own `/ping` or `/oauth2/auth` is decided like any other path (the
    /// contract's endpoint table).
    pub fn resolve(path: &str, listener: Listener) -> Option<Endpoint> {
        Self::named_by(path).filter(|e| e.served_on(listener))
    }

    /// The `/oauth2/*` endpoint a [normalised](super::path::normalize) path
    /// names on any listener, or `None`. Redirect targets use it: a browser
    /// sent to one of these after login or logout would start another flow,
    /// replay a spent callback or sign out again (a loop), so such a target
    /// becomes `/` (`redirect::validate`). `/ping` and `/ready` are not
    /// `/oauth2/*` and loop nowhere.
    pub fn oauth2(path: &str) -> Option<Endpoint> {
        Self::named_by(path).filter(|e| e.path().starts_with("/oauth2/"))
    }

    /// The endpoint's path (exact, case-sensitive, without a trailing `/`):
    /// the one place these strings live.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Ping => "/ping",
            Endpoint::Ready => "/ready",
            Endpoint::Start => "/oauth2/start",
            Endpoint::SignIn => "/oauth2/sign_in",
            Endpoint::Callback => "/oauth2/callback",
            Endpoint::SignOut => "/oauth2/sign_out",
            Endpoint::Auth => "/oauth2/auth",
            Endpoint::Userinfo => "/oauth2/userinfo",
            Endpoint::BackchannelLogout => "/oauth2/backchannel_logout",
            Endpoint::Jwks => "/oauth2/jwks.json",
        }
    }

    /// Whether `listener` serves this endpoint.
    pub fn served_on(self, listener: Listener) -> bool {
        match self {
            Endpoint::Start | Endpoint::Callback | Endpoint::SignOut => true,
            Endpoint::Ping
            | Endpoint::Ready
            | Endpoint::SignIn
            | Endpoint::Auth
            | Endpoint::Userinfo
            | Endpoint::BackchannelLogout
            | Endpoint::Jwks => listener == Listener::Proxy,
        }
    }

    /// The endpoint with exactly this path on some listener.
    fn named_by(path: &str) -> Option<Endpoint> {
        ALL.into_iter().find(|e| e.path() == path)
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
                "/oauth2/sign_in",
                "/oauth2/auth",
                "/oauth2/userinfo",
                "/oauth2/backchannel_logout",
                "/oauth2/jwks.json",
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

    #[test]
    fn every_endpoint_is_found_by_its_own_path() {
        for e in ALL {
            assert_eq!(Endpoint::named_by(e.path()), Some(e), "{e:?}");
        }
        // ALL lists each variant once (the match in `path` covers them all).
        let mut paths: Vec<_> = ALL.iter().map(|e| e.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ALL.len());
    }

    #[test]
    fn sign_in_is_served_on_listen_only() {
        assert_eq!(
            Endpoint::resolve("/oauth2/sign_in", Listener::Proxy),
            Some(Endpoint::SignIn)
        );
        for l in [Listener::ExtAuthzHttp, Listener::ExtAuthzGrpc] {
            assert_eq!(Endpoint::resolve("/oauth2/sign_in", l), None, "{l:?}");
        }
    }

    #[test]
    fn redirect_loops_are_the_oauth2_endpoints_on_any_listener() {
        for e in ALL {
            let oauth2 = !matches!(e, Endpoint::Ping | Endpoint::Ready);
            assert_eq!(Endpoint::oauth2(e.path()).is_some(), oauth2, "{e:?}");
        }
        for app in [
            "/",
            "/oauth2/",
            "/oauth2/start/",
            "/oauth2/other",
            "/OAUTH2/START",
        ] {
            assert_eq!(Endpoint::oauth2(app), None, "{app}");
        }
    }
}
