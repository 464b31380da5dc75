//! Helpers for `tests/extauthz.rs`: a tiny loopback HTTP/1.1 server (the
//! demo IdP and a JSON echo upstream run in the test process), the authgate
//! binary as a child process, and a browser-less login at the IdP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use authgate::demo::idp::{DemoClient, DemoIdp};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const CLIENT_ID: &str = "authgate";
pub const CLIENT_SECRET: &str = "s3cret";

pub type Handler = Arc<dyn Fn(&Method, &str, &HeaderMap, &[u8]) -> Response<Vec<u8>> + Send + Sync>;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves `handler` on `listener`, one request per connection.
pub fn serve(listener: TcpListener, handler: Handler) {
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break i + 4;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or_default().split(' ');
                let method = Method::from_bytes(first.next().unwrap_or("GET").as_bytes())
                    .unwrap_or(Method::GET);
                let target = first.next().unwrap_or("/").to_owned();
                let mut headers = HeaderMap::new();
                for line in lines {
                    if let Some((k, v)) = line.split_once(':') {
                        if let (Ok(k), Ok(v)) = (
                            HeaderName::from_bytes(k.trim().as_bytes()),
                            HeaderValue::from_str(v.trim()),
                        ) {
                            headers.append(k, v);
                        }
                    }
                }
                let len = headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = handler(&method, &target, &headers, &buf[head_end..head_end + len]);
                let mut out = format!("HTTP/1.1 {}\r\n", resp.status()).into_bytes();
                for (k, v) in resp.headers() {
                    if k != CONTENT_LENGTH && k != http::header::CONNECTION {
                        out.extend_from_slice(k.as_str().as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(v.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                out.extend_from_slice(
                    format!(
                        "content-length: {}\r\nconnection: close\r\n\r\n",
                        resp.body().len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(resp.body());
                let _ = sock.write_all(&out).await;
                let _ = sock.shutdown().await;
            });
        }
    });
}

/// The upstream: 200 with the request headers as JSON `{"name": [values]}`.
pub fn echo() -> Handler {
    Arc::new(|_, _, headers, _| {
        let mut map = serde_json::Map::new();
        for (k, v) in headers {
            let entry = map
                .entry(k.as_str().to_owned())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = entry {
                a.push(String::from_utf8_lossy(v.as_bytes()).into_owned().into());
            }
        }
        let mut resp = Response::new(serde_json::to_vec(&map).unwrap());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    })
}

fn key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
        .clone()
}

/// The demo IdP on a loopback port, accepting `redirect_uris`.
pub async fn start_idp(redirect_uris: Vec<String>) -> (String, DemoIdp) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let idp = DemoIdp::new_with_key(
        url::Url::parse(&issuer).unwrap(),
        vec![DemoClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris,
        }],
        key(),
    )
    .unwrap();
    let served = idp.clone();
    serve(
        listener,
        Arc::new(move |m, t, h, b| served.handle(m, t, h, b)),
    );
    (issuer, idp)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The authgate binary, killed when dropped.
pub struct Authgate {
    child: Child,
    dir: tempfile::TempDir,
}

impl Authgate {
    pub async fn start(config: &str, ready_url: &str) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("authgate.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_authgate"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut ag = Authgate { child, dir };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = ag.child.try_wait().unwrap() {
                panic!("authgate exited with {status}:\n{}", ag.log());
            }
            if let Ok(r) = client.get(ready_url).send().await {
                if r.status() == StatusCode::OK {
                    return ag;
                }
            }
            assert!(
                Instant::now() < deadline,
                "authgate never became ready:\n{}",
                ag.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("authgate.log")
    }
}

impl Drop for Authgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name=value` of a `Set-Cookie` line.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A user signs in at the IdP for the login redirect `location` (GET the
/// form, POST the credentials); returns where the IdP sends the browser back.
pub async fn login_at_idp(location: &str, user: &str) -> url::Url {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client.get(location).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let page = form.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let url = url::Url::parse(location).unwrap();
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.extend_pairs(url.query_pairs());
    body.append_pair("username", user);
    body.append_pair("password", user);
    let post = format!("{}://{}/authorize", url.scheme(), url.authority());
    let resp = client
        .post(post)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.finish())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
}

/// An ID token for `user`, obtained as the relying party itself would
/// (authorization code at the IdP, then the token endpoint).
pub async fn id_token(issuer: &str, redirect_uri: &str, user: &str) -> String {
    let mut auth = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups")
        .append_pair("state", "test-state")
        .append_pair("nonce", "test-nonce");
    let back = login_at_idp(auth.as_str(), user).await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("client_id", CLIENT_ID)
        .append_pair("client_secret", CLIENT_SECRET)
        .finish();
    let resp = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id_token"].as_str().unwrap().to_owned()
}

/// A GET with exactly the given headers (HTTP clients add their own, e.g.
/// `Accept: */*`; Envoy forwards only what the provider config lists).
/// Returns the status and the response headers.
pub async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let end = find(&buf, b"\r\n\r\n").expect("a whole response head");
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let mut map = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        map.append(
            HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    (status, map)
}
