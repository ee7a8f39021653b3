//! Link settings for optimised Linux/glibc binaries.
//!
//! RELR ("pack relative relocations", `-z pack-relative-relocs`): the dynamic relative
//! relocations of a position-independent binary are stored as a bitmap instead of 24-byte
//! `.rela.dyn` entries — about 0.35 MiB less on aarch64 (docs/PERFORMANCE.md, "Binary size").
//! It needs glibc >= 2.36 at run time (Debian 12, Raspberry Pi OS bookworm; the .deb depends on
//! it) and binutils >= 2.38 to link. Here rather than in RUSTFLAGS so that every way of building
//! (scripts/cross-build, cargo-deb, the Yocto recipe, which sets its own RUSTFLAGS) gets it
//! without rebuilding the dependencies. Debug builds (tests) are left alone; musl builds are
//! static and link with zig, so they are left alone too.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VECTORCARE_RELR");
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let optimised = env("PROFILE") != "debug";
    let glibc = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    // VECTORCARE_RELR=0 turns it off (an older linker, or a glibc < 2.36 target).
    let wanted = env("VECTORCARE_RELR") != "0";
    if optimised && glibc && wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
