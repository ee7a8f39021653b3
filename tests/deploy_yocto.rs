//! The Yocto layer (`yocto/meta-vectorcare`) cannot drift from the source tree: its
//! `-crates.inc` lists exactly Cargo.lock's crates with their checksums, the license checksum
//! points at the license line, the files the recipe installs exist, and the recipe passes
//! oelint-adv (`scripts/yocto-lint`; install with scripts/install/deploy-tools.sh).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const LAYER: &str = "yocto/meta-vectorcare";
const RECIPE_DIR: &str = "yocto/meta-vectorcare/recipes-connectivity/vectorcare-gateway";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|err| panic!("read {rel}: {err}"))
}

fn recipe() -> String {
    read(&format!("{RECIPE_DIR}/vectorcare-gateway_git.bb"))
}

fn crates_inc() -> String {
    read(&format!("{RECIPE_DIR}/vectorcare-gateway-crates.inc"))
}

/// "name-version" → sha256 of every registry crate in Cargo.lock.
fn lock_crates(lock: &str) -> BTreeMap<String, String> {
    let lock: toml::Table = toml::from_str(lock).expect("Cargo.lock is TOML");
    let packages = lock["package"].as_array().expect("[[package]] array");
    packages
        .iter()
        .filter(|p| {
            p.get("source")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s.starts_with("registry+"))
        })
        .map(|p| {
            let field = |k: &str| p[k].as_str().expect("string field").to_owned();
            (
                format!("{}-{}", field("name"), field("version")),
                field("checksum"),
            )
        })
        .collect()
}

/// Parses the .inc independently of scripts/yocto-crates; returns every inconsistency.
fn inc_problems(inc: &str, lock: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut uris = BTreeMap::new();
    let mut sums = BTreeMap::new();
    for line in inc.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("crate://") {
            let uri = rest.trim_end_matches('\\').trim();
            let (path, param) = uri.split_once(";name=").unwrap_or((uri, ""));
            let parts: Vec<&str> = path.split('/').collect();
            let [_host, name, version] = parts[..] else {
                problems.push(format!("malformed crate uri: {line}"));
                continue;
            };
            let key = format!("{name}-{version}");
            if param != key {
                problems.push(format!("{key}: name={param} does not match"));
            }
            if uris.insert(key.clone(), ()).is_some() {
                problems.push(format!("{key}: listed twice"));
            }
        } else if let Some(rest) = line.strip_prefix("SRC_URI[") {
            let Some((key, value)) = rest.split_once(".sha256sum] = ") else {
                problems.push(format!("malformed checksum line: {line}"));
                continue;
            };
            sums.insert(key.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    for (key, sum) in lock {
        match (uris.contains_key(key), sums.get(key)) {
            (false, _) => problems.push(format!("{key}: in Cargo.lock, missing from .inc")),
            (true, None) => problems.push(format!("{key}: no sha256sum")),
            (true, Some(s)) if s != sum => problems.push(format!("{key}: sha256sum {s} != {sum}")),
            _ => {}
        }
    }
    for key in uris.keys().chain(sums.keys()) {
        if !lock.contains_key(key) {
            problems.push(format!("{key}: in .inc, not in Cargo.lock"));
        }
    }
    problems
}

#[test]
fn crates_inc_lists_exactly_the_crates_and_checksums_of_cargo_lock() {
    let lock = lock_crates(&read("Cargo.lock"));
    assert!(
        lock.len() > 100,
        "Cargo.lock parse found only {}",
        lock.len()
    );
    let problems = inc_problems(&crates_inc(), &lock);
    assert!(
        problems.is_empty(),
        "crates.inc drifted from Cargo.lock (run scripts/yocto-crates):\n{}",
        problems.join("\n")
    );
}

#[test]
fn drift_check_catches_changed_missing_and_extra_crates() {
    let lock = lock_crates(&read("Cargo.lock"));
    let inc = crates_inc();
    let (first_key, first_sum) = lock.iter().next().expect("a crate");
    let changed = inc.replace(first_sum.as_str(), &"0".repeat(64));
    assert!(
        inc_problems(&changed, &lock)
            .iter()
            .any(|p| p.contains("sha256sum") && p.starts_with(first_key.as_str()))
    );
    let mut fewer = lock.clone();
    fewer.remove(first_key);
    assert!(
        inc_problems(&inc, &fewer)
            .iter()
            .any(|p| p.contains("not in Cargo.lock"))
    );
    let mut more = lock.clone();
    more.insert("left-pad-9.9.9".into(), "ab".repeat(32));
    assert!(
        inc_problems(&inc, &more)
            .iter()
            .any(|p| p.starts_with("left-pad-9.9.9: in Cargo.lock, missing"))
    );
}

#[test]
fn generator_reproduces_the_committed_crates_inc() {
    let out = Command::new("python3")
        .arg(repo("scripts/yocto-crates"))
        .arg("--check")
        .output()
        .expect("python3 runs scripts/yocto-crates");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `LIC_FILES_CHKSUM = "file://F;beginline=B;endline=E;md5=M"`: bitbake hashes lines B..=E
/// of F with their newlines.
#[test]
fn license_checksum_points_at_the_license_line() {
    let recipe = recipe();
    let spec = recipe
        .lines()
        .find_map(|l| l.strip_prefix("LIC_FILES_CHKSUM = \"file://"))
        .expect("LIC_FILES_CHKSUM")
        .trim_end_matches('"');
    let mut parts = spec.split(';');
    let file = parts.next().expect("file");
    let params: BTreeMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
    let begin: usize = params["beginline"].parse().expect("beginline");
    let end: usize = params["endline"].parse().expect("endline");
    let text = read(file);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let covered: String = lines[begin - 1..end].concat();
    assert!(
        covered.starts_with("license = \"Apache-2.0\""),
        "{file}:{begin} is {covered:?}; fix beginline/endline and md5"
    );
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.md5(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("invariant: stdin piped")
                .write_all(covered.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 md5");
    let md5 = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(params["md5"], md5);
    assert!(recipe.contains("LICENSE = \"Apache-2.0\""));
}

#[test]
fn layer_and_recipe_wire_up_releases_systemd_user_and_conffile() {
    let layer = read(&format!("{LAYER}/conf/layer.conf"));
    let compat = layer
        .lines()
        .find_map(|l| l.strip_prefix("LAYERSERIES_COMPAT_vectorcare = "))
        .expect("LAYERSERIES_COMPAT")
        .trim_matches('"');
    let releases: Vec<&str> = compat.split_whitespace().collect();
    assert_eq!(
        releases,
        ["whinlatter", "wrynose"],
        "Rust >= 1.88 releases only"
    );

    let recipe = recipe();
    let inherits = recipe
        .lines()
        .find_map(|l| l.strip_prefix("inherit "))
        .expect("inherit line");
    for class in ["cargo", "cargo-update-recipe-crates", "systemd", "useradd"] {
        assert!(inherits.split_whitespace().any(|c| c == class), "{class}");
    }
    assert!(recipe.contains("require ${BPN}-crates.inc"));
    assert!(recipe.contains("SYSTEMD_SERVICE:${PN} = \"vectorcare-gateway.service\""));
    assert!(recipe.contains("CONFFILES:${PN} = \"${sysconfdir}/vectorcare-gateway/gateway.toml\""));
    // Release profile must not strip (Yocto's already-stripped QA check).
    assert!(!recipe.contains("CARGO_PROFILE_RELEASE_STRIP = \"true\""));
    let release = read("Cargo.toml");
    let release = release
        .split("[profile.release]")
        .nth(1)
        .expect("[profile.release]")
        .split("\n[")
        .next()
        .unwrap_or_default();
    assert!(
        !release.lines().any(|l| l.trim_start().starts_with("strip")),
        "strip in [profile.release] trips Yocto QA"
    );

    // Every file the recipe installs from the source tree exists.
    let sources: Vec<&str> = recipe
        .split("${S}/")
        .skip(1)
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .collect();
    assert!(sources.len() >= 3, "{sources:?}");
    for rel in sources {
        assert!(repo(rel).is_file(), "recipe installs missing {rel}");
    }

    // PACKAGECONFIG entries that pass cargo features name features the crate has.
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let features = manifest.get("features").and_then(|f| f.as_table());
    for line in recipe.lines().filter(|l| l.starts_with("PACKAGECONFIG[")) {
        for feature in line.split("--features ").skip(1) {
            let name = feature.split([',', ' ', '"']).next().unwrap_or_default();
            assert!(
                features.is_some_and(|f| f.contains_key(name)),
                "PACKAGECONFIG maps to unknown cargo feature {name}"
            );
        }
    }
}

#[test]
fn recipe_passes_oelint_adv() {
    let out = Command::new(repo("scripts/yocto-lint"))
        .output()
        .expect("run scripts/yocto-lint");
    assert!(
        out.status.success(),
        "yocto-lint failed (install oelint-adv with scripts/install/deploy-tools.sh):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
