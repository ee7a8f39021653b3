//! `keygen`: a new client signing key and the public JWKS to register with the EHR.

use std::path::PathBuf;

use crate::upload::keys::{SigningAlg, generate_into_dir};

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signing algorithm: ES384 or RS384.
    #[arg(long, value_parser = ["ES384", "RS384"], default_value = "ES384")]
    pub alg: String,
    /// Directory for `<kid>.key.pem` (mode 0600) and `jwks.json` (public keys; grows with
    /// every key generated there, for rotation).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn execute(args: Args) -> super::Outcome {
    crate::crypto::install_providers();
    let alg = SigningAlg::parse(&args.alg)
        .ok_or_else(|| super::Failure::new(crate::exit::USAGE, "--alg must be ES384 or RS384"))?;
    let generated = generate_into_dir(&args.out, alg)
        .map_err(|e| super::Failure::new(crate::exit::UNAVAILABLE, e.to_string()))?;
    println!("kid:         {}", generated.kid);
    println!("alg:         {}", alg.as_str());
    println!(
        "private key: {} (mode 0600)",
        generated.private_key_path.display()
    );
    println!(
        "public JWKS: {} ({} key(s); register it with the EHR)",
        generated.jwks_path.display(),
        generated.keys_in_jwks
    );
    println!(
        "config:      [upload] private_key = \"{}\", active_kid = \"{}\", alg = \"{}\"",
        generated.private_key_path.display(),
        generated.kid,
        alg.as_str()
    );
    Ok(())
}
