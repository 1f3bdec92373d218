//! Compiles the C side of the in-process libav code (`csrc/`: the loader, the AAC encoder
//! and the video decoder) against the libavcodec, libavutil and libswscale headers, when
//! pkg-config finds them (Debian: `libavcodec-dev`, `libswscale-dev`). Without them the
//! firmware builds as before: the file source decodes with ffmpeg processes and scored.mp4's
//! music is encoded by them (`lavc`); the live engine on the board needs neither.

const SOURCES: [&str; 3] = ["csrc/lavc.c", "csrc/aacenc.c", "csrc/videodec.c"];

fn main() {
    for s in SOURCES {
        println!("cargo:rerun-if-changed={s}");
    }
    println!("cargo:rerun-if-changed=csrc/lavc.h");
    println!("cargo:rerun-if-env-changed=UNDERTONE_NO_LIBAVCODEC");
    println!("cargo:rustc-check-cfg=cfg(undertone_lavc)");
    if std::env::var_os("UNDERTONE_NO_LIBAVCODEC").is_some() {
        return;
    }
    let mut includes = Vec::new();
    for lib in ["libavcodec", "libavutil", "libswscale"] {
        // Headers only: the libraries are opened at run time (dlopen), never linked.
        match pkg_config::Config::new()
            .cargo_metadata(false)
            .env_metadata(true)
            .probe(lib)
        {
            Ok(l) => includes.extend(l.include_paths),
            Err(e) => {
                println!(
                    "cargo:warning=no {lib} headers ({}): videos will be decoded and \
                     scored.mp4's music encoded by ffmpeg processes; install libavcodec-dev \
                     and libswscale-dev for the in-process decoder and encoder",
                    e.to_string().lines().next().unwrap_or("")
                );
                return;
            }
        }
    }
    cc::Build::new()
        .files(SOURCES)
        .includes(&includes)
        .opt_level(2)
        .warnings(true)
        .compile("undertone_lavc");
    // dlopen and dlsym live in libc from glibc 2.34 on; older ones need libdl.
    println!("cargo:rustc-link-lib=dl");
    println!("cargo:rustc-link-lib=pthread");
    println!("cargo:rustc-cfg=undertone_lavc");
}
