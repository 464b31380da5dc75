//! The container image's runtime, proved without a container runtime (issue
//! 10): the Dockerfile's final stage is `gcr.io/distroless/cc-debian12:nonroot`
//! with the binary at `/usr/local/bin/authgate`, run as uid/gid 65532, and
//! Kubernetes adds a read-only root filesystem, the config (and its secret
//! files) mounted read-only at `/etc/authgate` and an `emptyDir` at `/tmp`.
//!
//! 1. Linking: every `DT_NEEDED` library of the release binary, and its ELF
//!    interpreter, is a file of the image's shared-library packages (Debian
//!    12's `libc6`, `libgcc-s1`, `libgomp1`, `libstdc++6`, `libssl3`, the
//!    file lists in `tests/fixtures/image/`, made by its `generate.sh`), every
//!    symbol version it needs is defined by that library in Debian 12, and no
//!    `GLIBC_x.y` above Debian 12's 2.36. The checker is tried on binaries and
//!    lists it must reject.
//! 2. Running: `bwrap` builds the image's filesystem from those package files
//!    only (plus the binary, distroless's `/etc/passwd` and `/etc/group`, the
//!    CA bundle), read-only, with a tmpfs `/tmp` and the config at
//!    `/etc/authgate`, in new user/pid/ipc/uts namespaces with authgate as pid
//!    1 (as a container's entrypoint is), sharing the host's network. There
//!    `authgate check` passes, and `authgate run` (the image's entrypoint
//!    verbatim) answers `/ping` and `/ready`, signs alice in at the demo IdP
//!    outside the sandbox, logs `SIGQUIT` as ignored with the default upgrade
//!    socket under `/tmp`, and exits 0 on `SIGTERM` -- as uid/gid 65532 on the
//!    host too (the test, as root, drops to 65532 before starting `bwrap`;
//!    not as root, `bwrap` maps 65532 to the caller's uid), no capabilities,
//!    no supplementary groups, every mount but `/tmp`, `/dev`, `/proc`
//!    read-only, and no write error logged.
//!
//! The binary is `target/release/authgate`, built with the default features
//! (`demo`); the image builds `--no-default-features`. The same test module
//! proves that equivalent for linking: `cargo tree` with and without the
//! default features differs in no crate that links native code (none with a
//! `links` key or a `-sys` name), so both binaries need the same libraries.
//! Today the two graphs differ only in authgate's own `demo` feature (its
//! optional `httparse` is in the graph anyway, through hyper).
//!
//! Not proved here: the image build itself and a binary built
//! `--no-default-features`; that the distroless image of the day still
//! carries these packages (the fixtures are Debian 12's, amd64); the
//! container runtime's seccomp profile and cgroup limits; an `--upgrade`
//! hand-over inside the container (Kubernetes rolls pods instead); a write
//! that fails without being logged.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Jar, TestServer, CLIENT_SECRET, COOKIE_SECRET};

/// The distroless "nonroot" user and group.
const NONROOT: u32 = 65532;
/// glibc of Debian 12 (bookworm): 2.36.
const DEBIAN12_GLIBC: [u32; 2] = [2, 36];
/// The shared-library packages of `gcr.io/distroless/cc-debian12`.
const PACKAGES: &[&str] = &["libc6", "libgcc-s1", "libgomp1", "libstdc++6", "libssl3"];
/// distroless's `/etc/passwd` and `/etc/group` (root, nobody, nonroot).
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n";

mod linking;

use linking::BaseImage;

// ---------------------------------------------------------------------------
// A container of the image, under bwrap.
// ---------------------------------------------------------------------------

/// The image's entrypoint (Dockerfile `ENTRYPOINT`).
const ENTRYPOINT: &[&str] = &[
    "/usr/local/bin/authgate",
    "run",
    "--config",
    "/etc/authgate/authgate.yaml",
];
/// `server.shutdown_grace` of the sandboxed run.
const GRACE: Duration = Duration::from_secs(3);

fn is_root() -> bool {
    // SAFETY: a plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `bwrap` runs here. As root (CI, where `./dev.sh test` installs
/// it) a missing one fails the test; otherwise the test is skipped, loudly.
fn bwrap_available() -> bool {
    match Command::new("bwrap").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ if is_root() => panic!("bwrap not found: `./dev.sh test` installs Debian's bubblewrap, and as root this test must run"),
        _ => {
            eprintln!(
                "\n*** SKIPPED: tests/image.rs sandbox test: bwrap is not installed and this is not root \
                 (`sudo apt-get install bubblewrap` to run it) ***\n"
            );
            false
        }
    }
}

/// The files a container of the image is made of, in a temporary
/// directory that uid 65532 can read: the binary, distroless's `/etc/passwd`
/// and `/etc/group`, and the config volume (`authgate.yaml` and
/// `secrets/*`, root:65532 and 0440 like the Kubernetes projected volume
/// with `fsGroup`, when the test runs as root; the caller's own otherwise).
struct ImageDir {
    dir: tempfile::TempDir,
}

impl ImageDir {
    fn new(config_yaml: &str) -> ImageDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Here, not bound from the checkout: that (e.g. under /root) need
        // not be searchable by 65532. A hard link when the binary is
        // world-readable on the same filesystem, else a copy (120 MB).
        let bin = root.join("authgate");
        let linked = std::fs::hard_link(support::bin(), &bin).is_ok()
            && std::fs::metadata(&bin).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
        if !linked {
            let _ = std::fs::remove_file(&bin);
            std::fs::copy(support::bin(), &bin).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for (name, text) in [("passwd", PASSWD), ("group", GROUP)] {
            std::fs::write(root.join(name), text).unwrap();
            std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let config = root.join("config");
        std::fs::create_dir_all(config.join("secrets")).unwrap();
        std::fs::write(config.join("authgate.yaml"), config_yaml).unwrap();
        std::fs::write(config.join("secrets/client-secret"), CLIENT_SECRET).unwrap();
        std::fs::write(config.join("secrets/cookie-secret"), COOKIE_SECRET).unwrap();
        for (path, dir) in [
            ("authgate.yaml", false),
            ("secrets/client-secret", false),
            ("secrets/cookie-secret", false),
            ("secrets", true),
            ("", true),
        ] {
            let path = config.join(path);
            let mode = match (is_root(), dir) {
                (true, true) => 0o750,
                (true, false) => 0o440,
                (false, true) => 0o700,
                (false, false) => 0o400,
            };
            if is_root() {
                std::os::unix::fs::chown(&path, Some(0), Some(NONROOT)).unwrap();
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        ImageDir { dir }
    }

    /// `bwrap` options for a container whose libraries are the files of
    /// `packages` (taken from this machine at the paths of the fixture lists).
    fn bwrap_args(&self, packages: &[&str]) -> Vec<OsString> {
        let root = self.dir.path();
        // A container: its own user (65532 inside), pid (authgate is pid
        // 1), ipc and uts namespaces, the host's network; distroless's
        // environment (PATH, HOME, SSL_CERT_FILE) and nothing else; /proc,
        // a minimal /dev, a world-writable tmpfs /tmp.
        let mut a: Vec<OsString> = "--unshare-user --uid 65532 --gid 65532 \
            --unshare-pid --as-pid-1 --unshare-ipc --unshare-uts --unshare-cgroup-try \
            --hostname authgate --die-with-parent --clearenv \
            --setenv PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --setenv HOME /home/nonroot --setenv SSL_CERT_FILE /etc/ssl/certs/ca-certificates.crt \
            --proc /proc --dev /dev --perms 1777 --tmpfs /tmp --dir /home/nonroot"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        let mut bind = |from: &Path, to: &str| {
            a.extend([OsString::from("--ro-bind"), from.into(), to.into()]);
        };
        bind(&root.join("authgate"), "/usr/local/bin/authgate");
        bind(&root.join("passwd"), "/etc/passwd");
        bind(&root.join("group"), "/etc/group");
        bind(&root.join("config"), "/etc/authgate");
        let bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if bundle.exists() {
            bind(bundle, "/etc/ssl/certs/ca-certificates.crt");
        }
        for path in &BaseImage::of(packages).files {
            // A directory, or (on a merged-/usr host) a link to one, e.g. /lib.
            if Path::new(path).is_dir() {
                continue;
            }
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(path).unwrap();
                    a.extend([OsString::from("--symlink"), target.into(), path.into()]);
                }
                Ok(_) => a.extend([OsString::from("--ro-bind"), path.into(), path.into()]),
                Err(_) => {} // e.g. documentation a minimal host left out
            }
        }
        a.push("--remount-ro".into());
        a.push("/".into());
        a
    }
}

/// `bwrap args cmd`, started as uid/gid 65532 when the test is root (so
/// the container's user is 65532 on the host too, not root mapped to it).
fn sandboxed(args: &[OsString], cmd: &[&str]) -> Command {
    let mut c = Command::new("bwrap");
    c.args(args).args(cmd).stdin(Stdio::null());
    if is_root() {
        // std also clears the supplementary groups when dropping root.
        c.uid(NONROOT).gid(NONROOT);
    }
    c
}

/// Runs `cmd` in the sandbox to the end; fails with a precise message when
/// bwrap itself cannot build it (e.g. user namespaces disabled).
fn sandboxed_output(args: &[OsString], cmd: &[&str]) -> std::process::Output {
    let out = sandboxed(args, cmd).output().expect("bwrap starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.starts_with("bwrap:"),
        "bwrap could not build the sandbox ({stderr}): it needs unprivileged user namespaces \
         (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
    );
    out
}

#[test]
fn sandbox_loads_libraries_from_the_image_packages_only() {
    if !bwrap_available() {
        return;
    }
    let image = ImageDir::new("");
    let full = sandboxed_output(
        &image.bwrap_args(PACKAGES),
        &["/usr/local/bin/authgate", "--version"],
    );
    assert!(
        full.status.success() && full.stdout.starts_with(b"authgate "),
        "authgate --version in the image: {full:?}"
    );
    // The same container with glibc only: the loader finds no libgcc_s, so
    // the run above used the image's libraries, not the host's.
    let glibc_only = sandboxed_output(
        &image.bwrap_args(&["libc6"]),
        &["/usr/local/bin/authgate", "--version"],
    );
    let stderr = String::from_utf8_lossy(&glibc_only.stderr);
    assert!(
        !glibc_only.status.success()
            && stderr.contains("libgcc_s.so.1: cannot open shared object file"),
        "authgate --version without libgcc-s1: {glibc_only:?}"
    );
}

/// A container of the image running the entrypoint; killed when dropped.
struct Container {
    bwrap: Child,
    /// authgate's pid on the host (pid 1 in the container).
    pid: u32,
    log: PathBuf,
    _image: ImageDir,
}

impl Drop for Container {
    fn drop(&mut self) {
        // Only while bwrap runs: it reaps authgate, so until then the pid
        // cannot have been reused.
        if self.bwrap.try_wait().ok().flatten().is_none() {
            // SAFETY: plain syscall on a pid of our own sandbox.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.bwrap.kill();
        let _ = self.bwrap.wait();
    }
}

impl Container {
    async fn start(image: ImageDir) -> Container {
        let log = image.dir.path().join("stderr");
        let args = image.bwrap_args(PACKAGES);
        let bwrap = sandboxed(&args, ENTRYPOINT)
            .stdout(std::fs::File::create(image.dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("bwrap starts");
        // bwrap forks authgate (no init in between: --as-pid-1).
        let children = format!("/proc/{0}/task/{0}/children", bwrap.id());
        let end = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            let child = std::fs::read_to_string(&children)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| status_field(*p, "Name").as_deref() == Some("authgate"));
            if let Some(pid) = child {
                break pid;
            }
            assert!(
                Instant::now() < end,
                "no authgate under bwrap: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        Container {
            bwrap,
            pid,
            log,
            _image: image,
        }
    }

    /// The log so far, without ANSI colours.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        regex::Regex::new("\x1b\\[[0-9;]*m")
            .unwrap()
            .replace_all(&text, "")
            .into_owned()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall on a pid of our own sandbox.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid);
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.bwrap.try_wait().unwrap() {
            panic!("the container exited ({status}); log:\n{}", self.log());
        }
    }
}

/// A field of `/proc/<pid>/status`, trimmed.
fn status_field(pid: u32, name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(':')
                .map(|v| v.trim().to_owned())
        })
}

/// Asserts the process's credentials: uid/gid 65532 inside its user
/// namespace, non-root on the host (65532 when the test is root), no
/// capabilities, `no_new_privs`, pid 1 in its pid namespace.
fn assert_nonroot(pid: u32) {
    // SAFETY: plain syscalls without arguments.
    let (host_uid, host_gid) = if is_root() {
        (NONROOT, NONROOT)
    } else {
        unsafe { (libc::getuid(), libc::getgid()) }
    };
    let field = |name: &str| {
        status_field(pid, name).unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    let ids = |v: String| {
        v.split_whitespace()
            .map(|n| n.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(field("Uid")),
        [host_uid; 4],
        "real, effective, saved, fs uid on the host"
    );
    assert_eq!(
        ids(field("Gid")),
        [host_gid; 4],
        "real, effective, saved, fs gid on the host"
    );
    assert_ne!(host_uid, 0);
    if is_root() {
        assert_eq!(field("Groups"), "", "supplementary groups");
    }
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(
        field("NSpid").split_whitespace().last(),
        Some("1"),
        "pid 1 in the container"
    );
    for (map, host) in [("uid_map", host_uid), ("gid_map", host_gid)] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{map}")).unwrap();
        let rows: Vec<Vec<u32>> = text.lines().map(|l| ids(l.to_owned())).collect();
        assert_eq!(
            rows,
            [vec![NONROOT, host, 1]],
            "{map}: only 65532 inside, as {host} outside"
        );
    }
}

/// Asserts the process's mounts: `/` and `/etc/authgate` read-only, `/tmp` a
/// writable tmpfs, nothing else writable but `/dev` and `/proc`.
fn assert_read_only_root(pid: u32) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut mounts = BTreeMap::new();
    for line in text.lines() {
        let (left, right) = line.split_once(" - ").unwrap();
        let f: Vec<&str> = left.split(' ').collect();
        let writable = f[5].split(',').any(|o| o == "rw");
        let fs = right.split(' ').next().unwrap();
        mounts.insert(f[4].to_owned(), (writable, fs.to_owned()));
        let allowed = f[4] == "/tmp"
            || f[4] == "/dev"
            || f[4].starts_with("/dev/")
            || f[4] == "/proc"
            || f[4].starts_with("/proc/");
        assert!(
            !writable || allowed,
            "writable mount {} in the container: {line}",
            f[4]
        );
    }
    assert_eq!(
        mounts.get("/").map(|m| m.0),
        Some(false),
        "read-only root: {text}"
    );
    assert_eq!(
        mounts.get("/etc/authgate").map(|m| m.0),
        Some(false),
        "read-only config: {text}"
    );
    assert_eq!(
        mounts.get("/tmp"),
        Some(&(true, "tmpfs".to_owned())),
        "writable tmpfs /tmp: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_as_nonroot_on_a_read_only_root_and_signs_in() {
    if !bwrap_available() {
        return;
    }
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let (port, metrics) = (support::free_port(), support::free_port());
    let yaml = format!(
        "server:\n  listen: 127.0.0.1:{port}\n  metrics: 127.0.0.1:{metrics}\n  threads: 1\n  shutdown_grace: {grace}s\n\
provider:\n  issuer_url: http://127.0.0.1:{idp}\n  client_id: {client}\n  client_secret_file: /etc/authgate/secrets/client-secret\n\
cookie:\n  secret_file: /etc/authgate/secrets/cookie-secret\n  secure: false\n\
upstreams:\n  - path: /\n    url: http://127.0.0.1:{echo}\n",
        grace = GRACE.as_secs(),
        idp = idp.port(),
        client = support::CLIENT_ID,
        echo = echo.port(),
    );
    let image = ImageDir::new(&yaml);

    let check = sandboxed_output(
        &image.bwrap_args(PACKAGES),
        &[
            "/usr/local/bin/authgate",
            "check",
            "--config",
            "/etc/authgate/authgate.yaml",
        ],
    );
    assert!(
        check.status.success()
            && String::from_utf8_lossy(&check.stdout).contains("/etc/authgate/authgate.yaml: OK"),
        "authgate check in the container: {check:?}"
    );

    let started = Instant::now();
    let mut c = Container::start(image).await;
    let client = support::client();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let end = Instant::now() + support::READY_DEADLINE;
    loop {
        c.assert_running();
        if client
            .get(url("/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "not ready in the container; log:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_ready = started.elapsed();
    let ping = client.get(url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200, "/ping");

    assert_nonroot(c.pid);
    assert_read_only_root(c.pid);

    // A sign-in at the IdP outside the container (the code exchange is
    // authgate's own request from inside), then the upstream sees alice.
    let mut jar = Jar::default();
    let callback = support::login(&client, &mut jar, &url("/app/page"), "alice").await;
    assert_eq!(callback.status(), 302, "callback; log:\n{}", c.log());
    let page = support::get(&client, &mut jar, &url("/app/page"), "text/html").await;
    assert_eq!(page.status(), 200, "signed-in page; log:\n{}", c.log());
    let seen = support::echo_json(&page.text().await.unwrap());
    assert_eq!(seen["upstream"], "app");
    assert_eq!(
        support::echoed_header(&seen, "x-auth-request-email"),
        ["alice@example.com"]
    );

    // SIGQUIT with no `--upgrade` waiting: the default upgrade socket is
    // under the container's temp dir, and the process keeps serving.
    c.signal(libc::SIGQUIT);
    let quit = support::eventually(Duration::from_secs(15), "SIGQUIT logged as ignored", || {
        let log = c.log();
        async move {
            log.lines()
                .find(|l| l.contains("SIGQUIT ignored"))
                .map(str::to_owned)
        }
    })
    .await;
    // The level as the error filter below expects it.
    assert!(quit.contains(" ERROR "), "{quit}");
    assert!(
        quit.contains("/tmp/authgate_upgrade.sock"),
        "upgrade socket not under /tmp: {quit}"
    );
    c.assert_running();
    assert_eq!(
        client.get(url("/ping")).send().await.unwrap().status(),
        200,
        "/ping after SIGQUIT"
    );
    let tmp: Vec<String> = std::fs::read_dir(format!("/proc/{}/root/tmp", c.pid))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_else(|e| vec![format!("(unreadable: {e})")]);

    // SIGTERM to pid 1: handled (a container runtime has no init to help).
    c.signal(libc::SIGTERM);
    let term = Instant::now();
    let status = loop {
        if let Some(s) = c.bwrap.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < GRACE + Duration::from_secs(5),
            "still running after SIGTERM; log:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let to_exit = term.elapsed();
    let log = c.log();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; log:\n{log}"
    );
    assert!(log.contains("SIGTERM: draining"), "{log}");
    // Within `shutdown_grace` (plus scheduling slack), as the contract says.
    assert!(
        to_exit < GRACE + Duration::from_secs(1),
        "exit {to_exit:?} after SIGTERM; log:\n{log}"
    );
    let drain = if log.contains("drained: every connection closed") {
        "every connection closed"
    } else {
        "shutdown_grace over"
    };

    // Nothing it tried to write failed: the root is read-only, so a write
    // outside /tmp would have been EROFS (or EACCES as 65532).
    for bad in [
        "Read-only file system",
        "os error 30",
        "Permission denied",
        "os error 13",
    ] {
        assert!(!log.contains(bad), "`{bad}` in the log:\n{log}");
    }
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && !l.contains("SIGQUIT ignored"))
        .collect();
    assert!(
        errors.is_empty(),
        "errors logged in the container: {errors:#?}"
    );
    eprintln!(
        "image: /ready 200 {} ms after bwrap started; exit 0 {} ms after SIGTERM ({drain}); /tmp held {tmp:?}",
        to_ready.as_millis(),
        to_exit.as_millis()
    );
}
