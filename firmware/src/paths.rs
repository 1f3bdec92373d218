//! Where the engine finds its data (models, templates, SoundFont): `--data DIR`, else
//! `$UNDERTONE_DATA`, else the source checkout it was built from (development), else the
//! installed location on the box.

use std::path::{Path, PathBuf};

/// Installed data folder on the box (the Yocto recipe puts models and templates there).
pub const INSTALLED_DATA_DIR: &str = "/usr/share/undertone";
/// Environment variable that overrides the data folder.
pub const DATA_ENV: &str = "UNDERTONE_DATA";

/// Resolves the data root.
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_ENV) {
        return PathBuf::from(p);
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if checkout.join("models").is_dir() {
        return checkout.canonicalize().unwrap_or(checkout);
    }
    PathBuf::from(INSTALLED_DATA_DIR)
}
