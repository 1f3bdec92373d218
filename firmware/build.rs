//! Compiles the in-process AAC encoder's C side (`csrc/aacenc.c`) against the libavcodec and
//! libavutil headers, when pkg-config finds them (Debian: `libavcodec-dev`). Without them the
//! firmware builds as before and scored.mp4's music is encoded by ffmpeg processes
//! (`score::aac`); the live engine on the board needs neither.

fn main() {
    println!("cargo:rerun-if-changed=csrc/aacenc.c");
    println!("cargo:rerun-if-env-changed=UNDERTONE_NO_LIBAVCODEC");
    println!("cargo:rustc-check-cfg=cfg(undertone_lavc)");
    if std::env::var_os("UNDERTONE_NO_LIBAVCODEC").is_some() {
        return;
    }
    let mut includes = Vec::new();
    for lib in ["libavcodec", "libavutil"] {
        // Headers only: the libraries are opened at run time (dlopen), never linked.
        match pkg_config::Config::new()
            .cargo_metadata(false)
            .env_metadata(true)
            .probe(lib)
        {
            Ok(l) => includes.extend(l.include_paths),
            Err(e) => {
                println!(
                    "cargo:warning=no {lib} headers ({}): scored.mp4's music will be encoded \
                     by ffmpeg processes; install libavcodec-dev for the in-process encoder",
                    e.to_string().lines().next().unwrap_or("")
                );
                return;
            }
        }
    }
    cc::Build::new()
        .file("csrc/aacenc.c")
        .includes(&includes)
        .opt_level(2)
        .warnings(true)
        .compile("undertone_aacenc");
    // dlopen and dlsym live in libc from glibc 2.34 on; older ones need libdl.
    println!("cargo:rustc-link-lib=dl");
    println!("cargo:rustc-cfg=undertone_lavc");
}
