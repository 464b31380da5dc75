//! Linking: the release binary's `DT_NEEDED` libraries, ELF interpreter and
//! symbol versions against the files of the image's Debian 12 packages
//! (`tests/fixtures/image/`), the checker tried on what it must reject, and
//! the `demo` feature's (non-)effect on native linking.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DEBIAN12_GLIBC, PACKAGES};
use crate::support;

// ---------------------------------------------------------------------------
// The base image's files and the binary's dynamic linking.
// ---------------------------------------------------------------------------

/// Debian's architecture name and multiarch triple for this machine.
fn debian_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("no Debian architecture known for {other}"),
    }
}

/// A fixture file's lines, `#` comments left out.
fn fixture(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/image")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it on Debian 12 with tests/fixtures/image/generate.sh",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the final stage's base image provides to a dynamically linked binary.
pub(super) struct BaseImage {
    /// Every path of the packages' file lists.
    pub(super) files: BTreeSet<String>,
    /// Library file name -> the symbol versions it defines.
    versions: BTreeMap<String, BTreeSet<String>>,
    /// Directories the dynamic linker searches by default (no RUNPATH).
    lib_dirs: Vec<String>,
}

impl BaseImage {
    /// The image as the fixtures of `packages` describe it.
    pub(super) fn of(packages: &[&str]) -> BaseImage {
        let (arch, triple) = debian_arch();
        let files = packages
            .iter()
            .flat_map(|p| fixture(&format!("{p}.{arch}.list")))
            .collect();
        let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in fixture(&format!("versions.{arch}.list")) {
            let (lib, version) = line.split_once(' ').expect("`<library> <version>`");
            versions
                .entry(lib.to_owned())
                .or_default()
                .insert(version.to_owned());
        }
        let lib_dirs = [
            format!("/lib/{triple}"),
            format!("/usr/lib/{triple}"),
            "/lib".into(),
            "/usr/lib".into(),
        ];
        BaseImage {
            files,
            versions,
            lib_dirs: lib_dirs.into(),
        }
    }

    /// The image's path of library `name` as the dynamic linker finds it.
    fn find(&self, name: &str) -> Option<String> {
        self.lib_dirs
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| self.files.contains(p))
    }
}

/// The dynamic-linking facts of an ELF file, as `readelf` prints them.
#[derive(Debug, Default)]
struct Linking {
    /// `DT_NEEDED` entries.
    needed: Vec<String>,
    /// `PT_INTERP`.
    interpreter: Option<String>,
    /// `DT_RPATH` and `DT_RUNPATH` entries.
    search_paths: Vec<String>,
    /// (library file, symbol version) from `.gnu.version_r`.
    versions: Vec<(String, String)>,
}

/// Runs `readelf` (binutils, which gcc, the Rust linker driver, depends on).
fn readelf(args: &[&str], file: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg("--wide")
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("readelf (binutils) not runnable: {e}"));
    assert!(
        out.status.success(),
        "readelf {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `readelf -d`, `-l` and `-V` of `file`, parsed.
fn linking_of(file: &Path) -> Linking {
    parse_linking(
        &readelf(&["-d"], file),
        &readelf(&["-l"], file),
        &readelf(&["-V"], file),
    )
}

/// The text between the first `[` after `key` and the next `]`.
fn bracketed<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    let start = rest.find('[')? + 1;
    let len = rest[start..].find(']')?;
    Some(&rest[start..start + len])
}

/// The facts in `readelf -d`, `-l` and `-V` output.
fn parse_linking(dynamic: &str, program: &str, versions: &str) -> Linking {
    let mut l = Linking::default();
    for line in dynamic.lines() {
        if let Some(lib) = bracketed(line, "(NEEDED)") {
            l.needed.push(lib.to_owned());
        }
        for key in ["(RPATH)", "(RUNPATH)"] {
            if let Some(p) = bracketed(line, key) {
                l.search_paths.extend(p.split(':').map(str::to_owned));
            }
        }
    }
    l.interpreter = program
        .lines()
        .find_map(|line| line.split_once("[Requesting program interpreter: "))
        .map(|(_, rest)| rest.trim_end().trim_end_matches(']').to_owned());
    let (mut in_needs, mut file) = (false, String::new());
    for line in versions.lines() {
        if line.starts_with("Version ") {
            in_needs = line.starts_with("Version needs section");
            continue;
        }
        if !in_needs {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            match pair[0] {
                "File:" => file = pair[1].to_owned(),
                "Name:" => l.versions.push((file.clone(), pair[1].to_owned())),
                _ => {}
            }
        }
    }
    l
}

/// `GLIBC_2.34` -> [2, 34]; None for a version that is not a number
/// (`GLIBC_PRIVATE`, `GLIBC_ABI_DT_RELR`).
fn glibc_version(v: &str) -> Option<Vec<u32>> {
    v.strip_prefix("GLIBC_")?
        .split('.')
        .map(|n| n.parse().ok())
        .collect()
}

/// Why `l` would not load in `image`; empty when it would.
fn link_problems(l: &Linking, image: &BaseImage) -> Vec<String> {
    let mut problems = Vec::new();
    match &l.interpreter {
        Some(i) if image.files.contains(i) => {}
        Some(i) => problems.push(format!("ELF interpreter {i} is not in the base image")),
        None => problems.push("no ELF interpreter (not a dynamically linked executable)".into()),
    }
    for p in &l.search_paths {
        problems.push(format!(
            "RPATH/RUNPATH {p}: the image has only the default library directories"
        ));
    }
    for lib in &l.needed {
        if image.find(lib).is_none() {
            problems.push(format!(
                "needs {lib}, which is in none of {:?} of the base image",
                image.lib_dirs
            ));
        }
    }
    for (lib, version) in &l.versions {
        if !image.versions.get(lib).is_some_and(|v| v.contains(version)) {
            problems.push(format!(
                "needs {version} from {lib}, which Debian 12's {lib} does not define"
            ));
        }
        if let Some(v) = glibc_version(version) {
            if v.as_slice() > DEBIAN12_GLIBC.as_slice() {
                problems.push(format!(
                    "needs {version} from {lib}: above Debian 12's glibc 2.36"
                ));
            }
        } else if version.starts_with("GLIBC_PRIVATE") {
            problems.push(format!("needs {version} from {lib}: glibc's private ABI"));
        }
    }
    problems
}

/// The highest `GLIBC_x.y` among `l`'s version needs.
fn max_glibc(l: &Linking) -> Option<String> {
    l.versions
        .iter()
        .filter_map(|(_, v)| glibc_version(v).map(|n| (n, v.clone())))
        .max()
        .map(|(_, v)| v)
}

#[test]
fn release_binary_links_only_what_the_base_image_has() {
    let bin = PathBuf::from(support::bin());
    let l = linking_of(&bin);
    let image = BaseImage::of(PACKAGES);
    // Guards against a parse that finds nothing and so nothing to reject.
    assert!(
        l.needed.iter().any(|n| n == "libc.so.6"),
        "no libc.so.6 among NEEDED: {l:?}"
    );
    assert!(
        l.versions
            .iter()
            .any(|(f, v)| f == "libc.so.6" && v.starts_with("GLIBC_2.")),
        "no GLIBC_ need parsed: {l:?}"
    );
    let problems = link_problems(&l, &image);
    assert!(
        problems.is_empty(),
        "{} would not load on {:?}:\n{}",
        bin.display(),
        PACKAGES,
        problems.join("\n")
    );
    eprintln!(
        "image: NEEDED {:?}, interpreter {:?}, highest glibc {:?}, {} symbol versions needed",
        l.needed,
        l.interpreter,
        max_glibc(&l),
        l.versions.len()
    );
}

#[test]
fn link_check_rejects_what_the_base_image_lacks() {
    let bin = PathBuf::from(support::bin());
    let l = linking_of(&bin);

    // The binary on an image with glibc only: libgcc_s (unwinding) missing.
    let glibc_only = link_problems(&l, &BaseImage::of(&["libc6"]));
    assert!(
        glibc_only
            .iter()
            .any(|p| p.contains("needs libgcc_s.so.1,")),
        "libgcc_s.so.1 not reported missing from a glibc-only image: {glibc_only:?}"
    );

    // A binary of this machine that needs libraries the image lacks: apt
    // (on every Debian) needs libapt-pkg.
    let apt = Path::new("/usr/bin/apt");
    assert!(
        apt.exists(),
        "/usr/bin/apt: this test expects a Debian machine"
    );
    let apt_problems = link_problems(&linking_of(apt), &BaseImage::of(PACKAGES));
    assert!(
        apt_problems
            .iter()
            .any(|p| p.contains("needs libapt-pkg.so")),
        "apt's libapt-pkg not reported missing: {apt_problems:?}"
    );

    // Symbol versions: one newer than bookworm's glibc, one libgcc_s lacks,
    // glibc's private ABI, a RUNPATH, another interpreter.
    let synthetic = parse_linking(
        " 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n\
         0x000000000000001d (RUNPATH)            Library runpath: [/opt/lib]\n",
        "      [Requesting program interpreter: /lib/ld-musl-x86_64.so.1]\n",
        "Version needs section '.gnu.version_r' contains 2 entries:\n \
         Addr: 0x0000000000000ab8  Offset: 0x000ab8  Link: 7 (.dynstr)\n  \
         000000: Version: 1  File: libc.so.6  Cnt: 3\n  \
         0x0010:   Name: GLIBC_2.36  Flags: none  Version: 3\n  \
         0x0020:   Name: GLIBC_2.38  Flags: none  Version: 4\n  \
         0x0030:   Name: GLIBC_PRIVATE  Flags: none  Version: 5\n  \
         0x0040: Version: 1  File: libgcc_s.so.1  Cnt: 1\n  \
         0x0050:   Name: GCC_14.0.0  Flags: none  Version: 6\n",
    );
    assert_eq!(synthetic.needed, ["libc.so.6"]);
    assert_eq!(max_glibc(&synthetic).as_deref(), Some("GLIBC_2.38"));
    let problems = link_problems(&synthetic, &BaseImage::of(PACKAGES));
    for expected in [
        "needs GLIBC_2.38 from libc.so.6: above Debian 12's glibc 2.36",
        "needs GLIBC_2.38 from libc.so.6, which Debian 12's libc.so.6 does not define",
        "needs GLIBC_PRIVATE from libc.so.6: glibc's private ABI",
        "needs GCC_14.0.0 from libgcc_s.so.1, which",
        "RPATH/RUNPATH /opt/lib",
        "ELF interpreter /lib/ld-musl-x86_64.so.1 is not in the base image",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "`{expected}` not among {problems:#?}"
        );
    }
    // ... and GLIBC_2.36 itself is fine.
    assert!(
        !problems.iter().any(|p| p.contains("GLIBC_2.36")),
        "{problems:?}"
    );
}

/// `cargo tree` of the crate (normal and build dependencies, with features,
/// one line per node), with or without the default features.
fn cargo_tree(default_features: bool) -> BTreeSet<String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal,build,features",
        "--prefix",
        "none",
    ])
    .arg("--manifest-path")
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if !default_features {
        cmd.arg("--no-default-features");
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches(" (*)").to_owned())
        .collect()
}

#[test]
fn demo_feature_adds_no_native_library() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--locked",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let native: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["links"].is_null() || p["name"].as_str().unwrap().ends_with("-sys"))
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    // Guards against a metadata shape that finds no native crate at all.
    assert!(
        native.contains("ring"),
        "ring (links = ring_core_...) not seen as native: {native:?}"
    );

    let (with, without) = (cargo_tree(true), cargo_tree(false));
    assert!(with.len() > 100, "cargo tree printed {} lines", with.len());
    // Lines only one of the builds has: crates, or features of crates
    // (`name feature "f"`); a native one among them could link a library
    // the tested binary needs and the image's would not, or the reverse.
    let differ: Vec<&String> = with.symmetric_difference(&without).collect();
    let native_changes: Vec<&&String> = differ
        .iter()
        .filter(|l| {
            l.split(' ')
                .next()
                .is_some_and(|name| native.contains(name))
        })
        .collect();
    assert!(
        native_changes.is_empty(),
        "the `demo` feature changes native crates: {native_changes:?}: test a --no-default-features binary instead"
    );
    eprintln!("image: default vs --no-default-features dependency graphs differ in {differ:?}");
}
