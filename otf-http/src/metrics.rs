//! Prometheus metrics: HTTP requests (count and latency by route and status),
//! scheduling latency (job queued to allocated), plus gauges read from the
//! store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use hyper::StatusCode;

use crate::router::Route;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    scheduling: Histogram,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn observe_request(&self, route: Option<Route>, status: StatusCode, took: Duration) {
        let route = route
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "unmatched".into());
        let mut m = self.lock();
        *m.requests
            .entry((route.clone(), status.as_u16()))
            .or_default() += 1;
        m.latency
            .entry(route)
            .or_default()
            .observe(took.as_secs_f64());
    }

    pub fn observe_scheduling(&self, took: Duration) {
        self.lock().scheduling.observe(took.as_secs_f64());
    }

    /// The text exposition of the counters, followed by `gauges`.
    pub fn render(&self, gauges: &str) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP otf_http_requests_total HTTP requests by route and status.\n# TYPE otf_http_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "otf_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP otf_http_request_duration_seconds HTTP request latency by route.\n# TYPE otf_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            h.render(
                &mut out,
                "otf_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP otf_scheduling_latency_seconds Time from a job being queued to its allocation.\n# TYPE otf_scheduling_latency_seconds histogram\n");
        m.scheduling
            .render(&mut out, "otf_scheduling_latency_seconds", "");
        out.push_str(gauges);
        out
    }
}
