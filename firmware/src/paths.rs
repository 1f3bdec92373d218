//! Where the engine finds its data (models, templates, SoundFont): `--data DIR`, else
//! `$UNDERTONE_DATA`, else the source checkout it was built from (development), else the
//! installed location on the box.

use std::path::{Path, PathBuf};

/// Installed data folder on the box (the Yocto recipe puts models and templates there).
pub const INSTALLED_DATA_DIR: &str = "/usr/share/undertone";
/// Environment variable that overrides the data folder.
pub const DATA_ENV: &str = "UNDERTONE_DATA";
/// The source checkout this binary was built from (the development fallback), unless the build
/// set `UNDERTONE_NO_CHECKOUT` (image builds: the build folder's path must not end up in the
/// binary, and there is no checkout on the box).
const CHECKOUT_DIR: Option<&str> = match option_env!("UNDERTONE_NO_CHECKOUT") {
    Some(_) => None,
    None => Some(env!("CARGO_MANIFEST_DIR")),
};

/// Resolves the data root.
pub fn data_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(DATA_ENV) {
        return PathBuf::from(p);
    }
    if let Some(dir) = CHECKOUT_DIR {
        let checkout = Path::new(dir).join("..");
        if checkout.join("models").is_dir() {
            return checkout.canonicalize().unwrap_or(checkout);
        }
    }
    PathBuf::from(INSTALLED_DATA_DIR)
}
