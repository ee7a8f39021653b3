//! Link settings for size-tuned Linux/glibc binaries (docs/PERFORMANCE.md, "Binary size").
//! Only optimised builds; debug builds (tests) are left alone, and musl builds (static, linked
//! by zig) too. `VECTORCARE_LINK_TUNING=0` turns all of it off.
//!
//! - RELR relocations (`-z pack-relative-relocs`): a position-independent binary's relative
//!   relocations as a bitmap instead of 24-byte `.rela.dyn` entries, about 0.3 MiB less. Needs
//!   glibc >= 2.36 at run time (Debian 12, Raspberry Pi OS bookworm; the .deb depends on it).
//!   GNU ld packs them on x86_64 from 2.38 but on aarch64 only from 2.41 (Debian 12 has 2.40
//!   and ignores the flag there), so cross builds link with the rust-lld that rustup ships
//!   (already the default linker on x86_64 Linux) when the toolchain has it.
//! - In size-tuned builds (opt-level "s"/"z": `dist`, the Yocto recipe) the DWARF unwind tables
//!   `.eh_frame`/`.eh_frame_hdr` (about 0.75 MiB) are discarded by a linker script. Nothing in the
//!   binary unwinds: those builds abort on panic, and in every build the panic hook ends the
//!   process before any unwinding could start (src/exit.rs). The cost is debuggability only: no
//!   in-process backtraces, and a debugger needs the unstripped build to walk a core's stack.
//!
//! Here rather than in RUSTFLAGS so that every way of building (scripts/cross-build, cargo-deb,
//! the Yocto recipe, which sets its own RUSTFLAGS) gets it without rebuilding the dependencies.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VECTORCARE_LINK_TUNING");
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let optimised = env("PROFILE") != "debug";
    let glibc = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if !optimised || !glibc || env("VECTORCARE_LINK_TUNING") == "0" {
        return;
    }
    let link_arg = |arg: &str| println!("cargo:rustc-link-arg-bins={arg}");

    if env("TARGET") != "x86_64-unknown-linux-gnu"
        && let Some(gcc_ld) = rust_lld_dir(&env("RUSTC"), &env("HOST"))
    {
        link_arg("-fuse-ld=lld");
        link_arg(&format!("-B{}", gcc_ld.display()));
    }
    link_arg("-Wl,-z,pack-relative-relocs");

    if matches!(env("OPT_LEVEL").as_str(), "s" | "z") {
        let script = PathBuf::from(env("OUT_DIR")).join("discard-unwind-tables.ld");
        let text =
            "SECTIONS { /DISCARD/ : { *(.eh_frame) *(.eh_frame_hdr) } }\nINSERT AFTER .text;\n";
        if std::fs::write(&script, text).is_ok() {
            link_arg(&format!("-Wl,-T,{}", script.display()));
        }
    }
}

/// rustup's `gcc-ld` directory (an `ld.lld` for `gcc -fuse-ld=lld`), if this toolchain has one.
fn rust_lld_dir(rustc: &str, host: &str) -> Option<PathBuf> {
    let output = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(output.stdout).ok()?;
    let dir = PathBuf::from(sysroot.trim()).join(format!("lib/rustlib/{host}/bin/gcc-ld"));
    dir.join("ld.lld").is_file().then_some(dir)
}
