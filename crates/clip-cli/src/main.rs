//! `clip`: a thin command-line layer over the `clip` library. Every number it prints comes from the library.
//! Exit codes: 0 success, 1 an error (or some inputs of a batch failed), 2 a usage error.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Modules in layer order (tests/layers.rs): each uses only those above it.
mod report;
mod progress;
mod json_list;
mod args;
mod commands;

use clap::Parser;

/// mimalloc's `purge_delay` option (index 15 in mimalloc 2 and 3's `mi_option_t`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Keep freed memory instead of returning it to the OS after 10 ms: image and activation buffers of the same
    // sizes come and go every batch, and re-faulting fresh zeroed pages doubled the time of `clip preprocess`.
    // SAFETY: setting an option is thread-safe in mimalloc and takes effect for later allocations.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = match commands::Cli::try_parse() {
        Ok(cli) => cli,
        // clap prints help/version on stdout with code 0 and usage errors on stderr with code 2.
        Err(e) => e.exit(),
    };
    let code = match commands::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            eprintln!("error: {}", report::one_line(&error));
            report::exit_code_for(&error)
        }
    };
    std::process::exit(code);
}
