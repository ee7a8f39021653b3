//! The Debian package built from Cargo.toml's `[package.metadata.deb]` by scripts/build-deb,
//! once with cargo-deb and once through the dpkg-deb fallback (scripts/deb-assemble), both
//! from the test-built binary so no release build is needed: metadata, conffiles, file list
//! and modes, maintainer scripts, and that the packaged files are the repository's and the
//! packaged binary runs. The arm64 package of the cross-built device binary is checked by
//! scripts/cross-test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_deb(args: &[&str]) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .output()
        .expect("dpkg-deb (Debian package dpkg) runs");
    ok(out, "dpkg-deb")
}

struct Built {
    _dir: tempfile::TempDir,
    deb: String,
    root: PathBuf,
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    CargoDeb,
    DpkgDeb,
}

fn build(tool: Tool) -> Built {
    if matches!(tool, Tool::CargoDeb) {
        let found = Command::new("cargo-deb").arg("--version").output();
        assert!(
            found.is_ok_and(|out| out.status.success()),
            "cargo-deb is missing: run scripts/install/deploy-tools.sh (cargo install --locked cargo-deb)"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut build_deb = Command::new(repo("scripts/build-deb"));
    match tool {
        // gzip: cargo-deb's fast compression; the debug binary is large.
        Tool::CargoDeb => build_deb.env("DEB_COMPRESSION", "gzip"),
        Tool::DpkgDeb => build_deb
            .env("DEB_TOOL", "dpkg-deb")
            .env("DEB_COMPRESSION", "none"),
    };
    let out = build_deb
        .args([
            "amd64",
            "--binary",
            env!("CARGO_BIN_EXE_vectorcare-gateway"),
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run scripts/build-deb");
    let stdout = ok(out, "scripts/build-deb");
    let deb = stdout.lines().last().expect("deb path").trim().to_owned();
    let root = dir.path().join("root");
    dpkg_deb(&["-x", &deb, root.to_str().expect("invariant: UTF-8 tempdir")]);
    Built {
        _dir: dir,
        deb,
        root,
    }
}

#[test]
fn cargo_deb_package_metadata_files_and_scripts() {
    check_package(&build(Tool::CargoDeb));
}

#[test]
fn dpkg_deb_fallback_package_metadata_files_and_scripts() {
    check_package(&build(Tool::DpkgDeb));
}

fn check_package(built: &Built) {
    let deb = built.deb.as_str();
    assert!(deb.ends_with(&format!(
        "vectorcare-gateway_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    )));

    let field = |name: &str| dpkg_deb(&["-f", deb, name]).trim().to_owned();
    assert_eq!(field("Package"), "vectorcare-gateway");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(field("Architecture"), "amd64");
    assert_eq!(field("Section"), "net");
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>= 2.36)"), "{depends}");
    assert!(depends.contains("systemd"), "{depends}");
    assert_eq!(field("Recommends"), "bluez");
    assert!(field("Description").contains("vectorcare-gateway.service"));

    // File list with modes: `-rwxr-xr-x root/root SIZE DATE TIME ./path`.
    let listing: BTreeMap<String, String> = dpkg_deb(&["-c", deb])
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let path = cols.last()?.trim_start_matches('.');
            // cargo-deb writes numeric owners (0/0), dpkg-deb names (root/root).
            let owner = cols[1].replace("0/0", "root/root");
            Some((path.to_owned(), format!("{} {owner}", cols[0])))
        })
        .collect();
    let expect = [
        ("/usr/bin/vectorcare-gateway", "-rwxr-xr-x root/root"),
        (
            "/usr/lib/systemd/system/vectorcare-gateway.service",
            "-rw-r--r-- root/root",
        ),
        (
            "/usr/lib/sysusers.d/vectorcare-gateway.conf",
            "-rw-r--r-- root/root",
        ),
        (
            "/usr/lib/tmpfiles.d/vectorcare-gateway.conf",
            "-rw-r--r-- root/root",
        ),
        (
            "/usr/share/dbus-1/system.d/vectorcare-gateway.conf",
            "-rw-r--r-- root/root",
        ),
        (
            "/etc/vectorcare-gateway/gateway.toml",
            "-rw-r----- root/root",
        ),
        (
            "/usr/share/doc/vectorcare-gateway/DEPLOY.md",
            "-rw-r--r-- root/root",
        ),
    ];
    for (path, mode) in expect {
        assert_eq!(listing.get(path).map(String::as_str), Some(mode), "{path}");
    }

    // Packaged files are the repository's own.
    for (packaged, source) in [
        (
            "usr/lib/systemd/system/vectorcare-gateway.service",
            "systemd/vectorcare-gateway.service",
        ),
        (
            "usr/lib/sysusers.d/vectorcare-gateway.conf",
            "systemd/vectorcare-gateway.sysusers",
        ),
        (
            "usr/lib/tmpfiles.d/vectorcare-gateway.conf",
            "systemd/vectorcare-gateway.tmpfiles",
        ),
        (
            "etc/vectorcare-gateway/gateway.toml",
            "config/gateway.example.toml",
        ),
    ] {
        let a = std::fs::read(built.root.join(packaged)).expect("packaged file");
        let b = std::fs::read(repo(source)).expect("source file");
        assert!(a == b, "{packaged} differs from {source}");
    }

    // The unit's binary path is where the package puts it.
    let unit = std::fs::read_to_string(repo("systemd/vectorcare-gateway.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/vectorcare-gateway "));

    // The packaged binary runs.
    let out = Command::new(built.root.join("usr/bin/vectorcare-gateway"))
        .arg("--version")
        .output()
        .expect("packaged binary runs");
    assert_eq!(
        ok(out, "--version").trim(),
        format!("vectorcare-gateway {}", env!("CARGO_PKG_VERSION"))
    );

    // Control area: conffiles and syntactically valid maintainer scripts.
    let control = tempfile::tempdir().expect("tempdir");
    let control_dir = control.path().to_str().expect("invariant: UTF-8 tempdir");
    dpkg_deb(&["-e", deb, control_dir]);
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert_eq!(conffiles, "/etc/vectorcare-gateway/gateway.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect(script).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script} mode");
        let out = Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("sh -n");
        ok(out, script);
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
    // postinst creates the user from the sysusers file the package ships, before chgrp.
    let sysusers = postinst
        .find("systemd-sysusers vectorcare-gateway.conf")
        .expect("postinst runs systemd-sysusers on the shipped file");
    let chgrp = postinst.find("chgrp vectorcare-gateway").expect("chgrp");
    assert!(sysusers < chgrp);
}
