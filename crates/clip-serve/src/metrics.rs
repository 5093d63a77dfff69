//! Prometheus metrics, rendered in the text exposition format: requests by route and status, queue depth, batch
//! sizes, seconds per stage (decode + preprocess, model), and images and texts encoded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the batch-size histogram's buckets.
const BATCH_BUCKETS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// Upper bounds (seconds) of the request-latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, bound) in bounds.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in bounds.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_sizes: BTreeMap<&'static str, Histogram>,
    stage_seconds: BTreeMap<&'static str, (f64, u64)>,
    encoded: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.with(|m| {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.latency
                .entry(route.to_string())
                .or_default()
                .observe(&LATENCY_BUCKETS, elapsed.as_secs_f64());
        });
    }

    /// One model call over `size` items of `kind` ("image" or "text").
    pub fn observe_batch(&self, kind: &'static str, size: usize, elapsed: Duration) {
        let bounds: Vec<f64> = BATCH_BUCKETS.iter().map(|b| *b as f64).collect();
        self.with(|m| {
            m.batch_sizes
                .entry(kind)
                .or_default()
                .observe(&bounds, size as f64);
            let stage = m
                .stage_seconds
                .entry(if kind == "image" {
                    "image_model"
                } else {
                    "text_model"
                })
                .or_default();
            stage.0 += elapsed.as_secs_f64();
            stage.1 += 1;
            *m.encoded.entry(kind).or_default() += size as u64;
        });
    }

    /// Time spent in a stage outside the model (`decode`, `preprocess`: of one image).
    pub fn observe_stage(&self, stage: &'static str, elapsed: Duration) {
        self.with(|m| {
            let entry = m.stage_seconds.entry(stage).or_default();
            entry.0 += elapsed.as_secs_f64();
            entry.1 += 1;
        });
    }

    /// The exposition text; `queues` are (name, depth) pairs read at this moment.
    pub fn render(&self, queues: &[(&str, usize)]) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else {
            return out;
        };
        out.push_str("# HELP clip_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE clip_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "clip_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP clip_request_seconds Time to answer a request, by route.\n");
        out.push_str("# TYPE clip_request_seconds histogram\n");
        for (route, h) in &m.latency {
            h.render(
                &mut out,
                "clip_request_seconds",
                &format!("route=\"{}\"", escape(route)),
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP clip_queue_depth Items waiting for the model, by queue.\n");
        out.push_str("# TYPE clip_queue_depth gauge\n");
        for (queue, depth) in queues {
            let _ = writeln!(out, "clip_queue_depth{{queue=\"{queue}\"}} {depth}");
        }
        out.push_str("# HELP clip_batch_size Items per model call, by input kind.\n");
        out.push_str("# TYPE clip_batch_size histogram\n");
        let bounds: Vec<f64> = BATCH_BUCKETS.iter().map(|b| *b as f64).collect();
        for (kind, h) in &m.batch_sizes {
            h.render(
                &mut out,
                "clip_batch_size",
                &format!("kind=\"{kind}\""),
                &bounds,
            );
        }
        out.push_str("# HELP clip_stage_seconds_total Seconds spent per stage (decode, preprocess, image_model, text_model).\n");
        out.push_str("# TYPE clip_stage_seconds_total counter\n");
        for (stage, (seconds, _)) in &m.stage_seconds {
            let _ = writeln!(
                out,
                "clip_stage_seconds_total{{stage=\"{stage}\"}} {seconds}"
            );
        }
        out.push_str("# HELP clip_stage_calls_total Calls per stage.\n");
        out.push_str("# TYPE clip_stage_calls_total counter\n");
        for (stage, (_, calls)) in &m.stage_seconds {
            let _ = writeln!(out, "clip_stage_calls_total{{stage=\"{stage}\"}} {calls}");
        }
        out.push_str("# HELP clip_encoded_total Images and texts encoded.\n");
        out.push_str("# TYPE clip_encoded_total counter\n");
        for (kind, n) in &m.encoded {
            let _ = writeln!(out, "clip_encoded_total{{kind=\"{kind}\"}} {n}");
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
