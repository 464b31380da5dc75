//! A signed-in browser's view of a gate whose session store is switching
//! (the Redis Sentinel, Cluster and TLS tests): a cookie's status on a path,
//! login and sign-out retried through 503s, and a [`Load`] recording every
//! answer one session gets while a switch happens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{client, eventually, login, Authgate, Jar};

/// A browser's session as a `Cookie` header, replayed as is on `path`: the
/// status, or 0 when no answer came (counted as a failure, like any status
/// but 200/503).
pub async fn status(gate: &Authgate, cookie: &str, path: &str) -> u16 {
    client()
        .get(gate.url(path))
        .header("accept", "text/html")
        .header("cookie", cookie)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Signs `user` in, retrying every 100 ms while the store answers 503 (a
/// switch); the session's `Cookie` header. Panics on any other answer or
/// when no login succeeded within `deadline`.
pub async fn login_retrying(gate: &Authgate, user: &str, deadline: Duration) -> String {
    let c = client();
    let end = Instant::now() + deadline;
    loop {
        let mut jar = Jar::default();
        let back = login(&c, &mut jar, &gate.url("/app/page"), user).await;
        if back.status() == 302 && !jar.session_names().is_empty() {
            return jar.header();
        }
        assert_eq!(back.status(), 503, "login answered neither success nor 503");
        assert!(
            Instant::now() < end,
            "no login succeeded within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs out with `cookie`, retrying every 50 ms while the store answers
/// 503; how many 503s came first. Panics on any other answer or after
/// `deadline`.
pub async fn sign_out_retrying(gate: &Authgate, cookie: &str, deadline: Duration) -> usize {
    let end = Instant::now() + deadline;
    let mut unavailable = 0;
    loop {
        let s = status(gate, cookie, "/oauth2/sign_out").await;
        if s == 302 {
            return unavailable;
        }
        assert_eq!(s, 503, "sign-out answered {s}");
        unavailable += 1;
        assert!(Instant::now() < end, "sign-out never succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests on `/app/page` with one session, back to back (10 ms apart),
/// until stopped: every status with the time it was answered.
pub struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a [`Load`] saw: requests, 200s, 503s, and the time from the first
/// to the last 503.
pub struct Seen {
    /// Requests answered (or failed) in all.
    pub sent: usize,
    /// Answers 200.
    pub ok: usize,
    /// Answers 503.
    pub unavailable: usize,
    /// From the first 503 to the last (zero with fewer than two).
    pub window: Duration,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} x 200, {} x 503 (first to last 503: {:?}), 0 other",
            self.sent, self.ok, self.unavailable, self.window
        )
    }
}

impl Load {
    /// Starts sending with the `Cookie` header `cookie`.
    pub fn start(gate: &Authgate, cookie: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (url, cookie) = (gate.url("/app/page"), cookie.to_owned());
        let (s, r) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let c = client();
            while !s.load(Ordering::Relaxed) {
                let st = c
                    .get(&url)
                    .header("accept", "text/html")
                    .header("cookie", &cookie)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                r.lock().push((Instant::now(), st));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Load { stop, seen, task }
    }

    /// Waits until `more` further answers came (the state after a switch
    /// is seen too, not only the switch); panics after `deadline`.
    pub async fn wait_more(&self, more: usize, deadline: Duration) {
        let until = self.seen.lock().len() + more;
        eventually(deadline, "the load going on", || async {
            (self.seen.lock().len() >= until).then_some(())
        })
        .await;
    }

    /// Stops; asserts only 200 and 503 were seen (never an anonymous 302
    /// or 401, never a lost request), naming the load `what` if not.
    pub async fn finish(self, what: &str) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let seen = self.seen.lock().clone();
        let bad: Vec<u16> = seen
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| !matches!(s, 200 | 503))
            .collect();
        assert!(
            bad.is_empty(),
            "{what}: answers other than 200/503: {bad:?}"
        );
        let unavailable: Vec<Instant> = seen
            .iter()
            .filter(|(_, s)| *s == 503)
            .map(|(t, _)| *t)
            .collect();
        let window = match (unavailable.first(), unavailable.last()) {
            (Some(a), Some(b)) => *b - *a,
            _ => Duration::ZERO,
        };
        Seen {
            sent: seen.len(),
            ok: seen.len() - unavailable.len(),
            unavailable: unavailable.len(),
            window,
        }
    }
}
