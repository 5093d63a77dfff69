//! Files in and out, safely, for every crate of the project.
//!
//! * Reads ([`read_input`], [`read_input_text`], [`open_input`]) accept only regular files, so a FIFO, a device
//!   (`/dev/zero`) or a directory is refused at once instead of blocking or growing without end; and they stop
//!   at a size limit that depends on what is read ([`Input`]): image and text limits are configurable
//!   ([`set_limit`], or the `CLIP_MAX_IMAGE_BYTES` / `CLIP_MAX_TEXT_BYTES` environment variables).
//! * Writes ([`OutputFile`], [`write_output`]) go through symlinks to their target, replace a regular file
//!   atomically (temporary file in the same directory, `fsync`, rename), write a device or FIFO directly as a
//!   shell's `>` does (never replacing it with a regular file), and report every error (`ENOSPC` included).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::missing_safety_doc)]
mod error;
mod limits;
mod read;
mod write;
#[cfg(test)]
mod test_util;

pub use error::FileError;
pub use limits::{limit, parse_size, set_limit, Input};
pub use read::{open_input, read_input, read_input_text, read_stdin};
pub use write::{write_output, OutputFile};
