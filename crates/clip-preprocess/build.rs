//! Builds the small C shim around libjpeg (from `mozjpeg-sys`): libjpeg reports fatal errors by calling
//! `error_exit`, which must not return, so the shim catches them with setjmp/longjmp in C and hands Rust
//! plain status codes (no unwinding across the FFI boundary).
fn main() {
    println!("cargo:rerun-if-changed=csrc/jpeg_shim.c");
    let include = std::env::var_os("DEP_JPEG_INCLUDE").unwrap_or_default();
    let mut build = cc::Build::new();
    build.file("csrc/jpeg_shim.c").warnings(true);
    for dir in std::env::split_paths(&include) {
        build.include(dir);
    }
    build.compile("clip_jpeg_shim");
}
