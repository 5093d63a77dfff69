//! How failures reach the user: one line on stderr and an exit code (1 for errors, 2 for usage errors).

use std::fmt;

/// Misuse of the command line that clap cannot see (for example no labels at all): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What a command reports when it ran to the end.
pub enum Outcome {
    Success,
    /// Some inputs of a batch failed (each already reported); the rest were processed.
    PartialFailure {
        failed: usize,
        total: usize,
    },
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::PartialFailure { failed, total } => {
                eprintln!("error: {failed} of {total} inputs failed");
                1
            }
        }
    }

    pub fn from_failures(failed: usize, total: usize) -> Self {
        if failed == 0 {
            Outcome::Success
        } else {
            Outcome::PartialFailure { failed, total }
        }
    }
}

/// The error and its causes on one line, without repeating a cause already quoted by its parent.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

pub fn exit_code_for(error: &anyhow::Error) -> i32 {
    if error.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}

/// Reports one failed input of a batch and carries on.
pub fn input_failed(error: &dyn fmt::Display) {
    eprintln!("error: {error}");
}
