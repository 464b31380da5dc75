//! `cookie`: the name (RFC 6265 token and prefix rules), the secret and the
//! previous secrets (raw or base64, 16/24/32 bytes), attributes, and
//! expire/refresh.

use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::Validator;
use crate::config::file::CookieFile;
use crate::config::model::{Cookie, SameSite};
use crate::domain::Secret;

impl Validator {
    pub(super) fn cookie(&mut self, c: CookieFile) -> Option<Cookie> {
        let name_ok = self.cookie_name(&c);
        let secret = self
            .secret_twin(
                "cookie.secret",
                &c.secret,
                "cookie.secret_file",
                &c.secret_file,
            )
            .and_then(|text| {
                if text.is_empty() {
                    self.problem(
                        "cookie.secret",
                        "must not be empty: set cookie.secret or cookie.secret_file \
                         (`authgate secret` prints one)",
                    );
                    return None;
                }
                decode_cookie_secret(&text)
                    .map_err(|got| {
                        self.problem(
                            "cookie.secret",
                            format!("must decode to 16, 24 or 32 bytes, got {got}"),
                        )
                    })
                    .ok()
            });

        let previous = self.previous_cookie_secrets(&c);

        let domains = self.text_list("cookie.domains", &c.domains, true);
        if !c.path.starts_with('/') {
            self.problem("cookie.path", "must start with /");
        }
        let same_site = match c.same_site.trim().to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => {
                if !c.secure {
                    self.problem(
                        "cookie.same_site",
                        "none requires cookie.secure: true (browsers drop the cookie otherwise)",
                    );
                }
                Some(SameSite::None)
            }
            _ => {
                self.problem("cookie.same_site", "must be lax, strict or none");
                None
            }
        };

        let expire = self.duration("cookie.expire", &c.expire.0);
        if expire == Some(Duration::ZERO) {
            self.problem("cookie.expire", "must be greater than 0");
        }
        let refresh = self
            .duration("cookie.refresh", &c.refresh.0)
            .map(|d| (!d.is_zero()).then_some(d));
        if let (Some(Some(refresh)), Some(expire)) = (refresh, expire) {
            if refresh >= expire {
                self.problem("cookie.refresh", "must be shorter than cookie.expire");
            }
        }

        if !name_ok || !c.path.starts_with('/') || expire == Some(Duration::ZERO) {
            return None;
        }
        Some(Cookie {
            name: c.name,
            secret: Secret::new(secret?),
            previous_secrets: previous?,
            domains: domains?,
            path: c.path,
            secure: c.secure,
            http_only: c.http_only,
            same_site: same_site?,
            expire: expire?,
            refresh: refresh?,
        })
    }

    /// `cookie.previous_secrets` and the lines of
    /// `cookie.previous_secrets_file` (blank lines ignored), each decoded
    /// like `cookie.secret`; problems are named by list index or file line.
    fn previous_cookie_secrets(&mut self, c: &CookieFile) -> Option<Vec<Secret<Vec<u8>>>> {
        let mut texts: Vec<(String, String)> = c
            .previous_secrets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    format!("cookie.previous_secrets[{i}]"),
                    t.trim().to_string(),
                )
            })
            .collect();
        let file = c.previous_secrets_file.trim();
        if !file.is_empty() {
            match std::fs::read_to_string(file) {
                Ok(content) => texts.extend(
                    content
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| !l.trim().is_empty())
                        .map(|(n, l)| {
                            let key = format!("cookie.previous_secrets_file (line {})", n + 1);
                            (key, l.trim().to_string())
                        }),
                ),
                Err(err) => {
                    self.problem(
                        "cookie.previous_secrets_file",
                        format!("cannot read {file}: {err}"),
                    );
                    return None;
                }
            }
        }
        let mut ok = true;
        let mut secrets = Vec::with_capacity(texts.len());
        for (key, text) in texts {
            if text.is_empty() {
                self.problem(&key, "must not be empty");
                ok = false;
                continue;
            }
            match decode_cookie_secret(&text) {
                Ok(bytes) => secrets.push(Secret::new(bytes)),
                Err(got) => {
                    self.problem(
                        &key,
                        format!("must decode to 16, 24 or 32 bytes, got {got}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(secrets)
    }

    /// RFC 6265 cookie-name is an RFC 7230 token; browsers also enforce the
    /// `__Host-` / `__Secure-` prefix rules, so a violation would silently
    /// lose every session.
    fn cookie_name(&mut self, c: &CookieFile) -> bool {
        let name = c.name.as_str();
        if name.is_empty() {
            self.problem("cookie.name", "must not be empty");
            return false;
        }
        if !name.bytes().all(is_tchar) {
            self.problem(
                "cookie.name",
                "must be a cookie name token (letters, digits and !#$%&'*+-.^_`|~)",
            );
            return false;
        }
        let mut ok = true;
        if (name.starts_with("__Secure-") || name.starts_with("__Host-")) && !c.secure {
            self.problem(
                "cookie.name",
                "the __Secure-/__Host- prefix requires cookie.secure: true",
            );
            ok = false;
        }
        if name.starts_with("__Host-") && (c.path != "/" || !c.domains.is_empty()) {
            self.problem(
                "cookie.name",
                "the __Host- prefix requires cookie.path: / and no cookie.domains",
            );
            ok = false;
        }
        ok
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Cookie secret bytes, as oauth2-proxy reads them: base64 (std or url,
/// padded or not) when that decodes to an AES key size, else the raw bytes.
/// On failure returns the length to report: the decoded one when the text
/// is long enough to be meant as base64 (22+ chars), else the raw one.
pub(in crate::config) fn decode_cookie_secret(text: &str) -> Result<Vec<u8>, usize> {
    const VALID: [usize; 3] = [16, 24, 32];
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engines = [
        GeneralPurpose::new(&base64::alphabet::STANDARD, config),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
    ];
    let decoded = engines.iter().find_map(|engine| engine.decode(text).ok());
    match decoded {
        Some(bytes) if VALID.contains(&bytes.len()) => Ok(bytes),
        _ if VALID.contains(&text.len()) => Ok(text.as_bytes().to_vec()),
        Some(bytes) if text.len() >= 22 => Err(bytes.len()),
        _ => Err(text.len()),
    }
}
