//! `clip`: a thin command-line layer over the `clip` library. Every number it prints comes from the library.
//! Exit codes: 0 success, 1 an error (or some inputs of a batch failed), 2 a usage error.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod commands;
mod progress;
mod report;

use clap::Parser;

fn main() {
    let cli = match args::Cli::try_parse() {
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
