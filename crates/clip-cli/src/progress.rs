//! Progress bars on stderr (hidden when stderr is not a terminal or with --quiet).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Download progress for the library's hub, one bar per file.
pub struct DownloadBar {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl DownloadBar {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: Mutex::new(None),
            quiet,
        }
    }
}

impl clip::hub::Progress for DownloadBar {
    fn begin(&self, label: &str, total_bytes: Option<u64>) {
        let bar = match total_bytes {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(draw_target(self.quiet));
        bar.set_message(format!("downloading {label}"));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(bytes);
            }
        }
    }

    fn end(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

fn draw_target(quiet: bool) -> ProgressDrawTarget {
    if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar over `total` items (images), shown only for batches big enough to wait on.
pub fn items(total: usize, what: &str, quiet: bool) -> ProgressBar {
    const WORTH_SHOWING: usize = 8;
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar.set_draw_target(if total >= WORTH_SHOWING {
        draw_target(quiet)
    } else {
        ProgressDrawTarget::hidden()
    });
    bar
}
