//! `redirect`: the host names `rd=` may point at after sign-in or sign-out.

use super::Validator;
use crate::config::file::RedirectFile;
use crate::config::model::Redirect;

impl Validator {
    pub(super) fn redirect(&mut self, r: RedirectFile) -> Option<Redirect> {
        let allowed_domains = self.text_list("redirect.allowed_domains", &r.allowed_domains, true);
        let mut ok = true;
        for (i, domain) in r.allowed_domains.iter().enumerate() {
            if domain.contains('/') {
                self.problem(
                    format!("redirect.allowed_domains[{i}]"),
                    "must be a host name (e.g. app.example.com or .example.com), not a URL",
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Redirect {
            allowed_domains: allowed_domains?,
        })
    }
}
