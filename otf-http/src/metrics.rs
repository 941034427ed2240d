//! Prometheus metrics: HTTP requests (count and latency by route and status),
//! scheduling latency (job queued to allocated), and the gauges of agents,
//! runs and jobs, kept up to date by [`follow`]ing the event bus (read from
//! the store once at start and after missed events, never per scrape).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use hyper::StatusCode;
use otf_core::store::Store;
use otf_core::Core;

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

/// One number of a pool's queue, for its `otf_pool_*` family.
type PoolValue = fn(&otf_core::gauges::PoolQueue) -> u64;

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// None until the first reading of the store.
    gauges: Mutex<Option<otf_core::gauges::Gauges>>,
    /// Whether this replica runs the dispatcher (`otf_leader`).
    leader: std::sync::atomic::AtomicBool,
    /// The SSH server's numbers, when it runs.
    ssh: std::sync::OnceLock<std::sync::Arc<otf_ssh::Stats>>,
}

/// Read the gauges from the store (at start, before serving: `/metrics`
/// answers 503 until a reading succeeded). Subscribe to the bus before
/// calling it, so that nothing between the reading and the subscription is
/// missed (applying an event the reading already shows changes nothing).
pub async fn prime<S: Store>(core: &Core<S>, metrics: &Metrics) -> bool {
    match core.read_gauges().await {
        Ok(g) => {
            *metrics.gauges.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the gauges; retrying");
            false
        }
    }
}

/// Keep `metrics`' gauges up to date from the events of `sub` until
/// `stop`; read them again from the store after missed events.
pub async fn follow<S: Store>(
    core: Core<S>,
    metrics: std::sync::Arc<Metrics>,
    mut sub: otf_core::events::Subscription,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut stale = metrics
        .gauges
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none();
    loop {
        if stale {
            stale = !prime(&core, &metrics).await;
        }
        let retry = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            _ = &mut stop => return,
            _ = retry, if stale => {}
            e = sub.recv() => match e {
                Ok(event) => {
                    if let Some(g) = metrics.gauges.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                        g.apply(&event);
                    }
                }
                Err(otf_core::events::RecvError::Lagged) => stale = true,
                Err(otf_core::events::RecvError::Closed) => return,
            },
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request answered, under its route's name (`unmatched` for paths
    /// of no route).
    pub fn observe_request(&self, route: Option<&str>, status: StatusCode, took: Duration) {
        let route = route.unwrap_or("unmatched").to_string();
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

    pub fn set_leader(&self, leading: bool) {
        self.leader
            .store(leading, std::sync::atomic::Ordering::SeqCst);
    }

    /// A pool's queue (`pool` as labelled: `apool-…` or `server`) at `now`;
    /// None before the first reading.
    pub fn pool_queue(
        &self,
        pool: &str,
        now: otf_core::clock::Timestamp,
    ) -> Option<otf_core::gauges::PoolQueue> {
        let g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        let mut pools = g.as_ref()?.pools(now);
        Some(pools.remove(pool).unwrap_or_default())
    }

    /// The gauges as exposition text at `now`; None before the first reading.
    pub fn gauges(&self, now: otf_core::clock::Timestamp) -> Option<String> {
        let g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        let g = g.as_ref()?;
        let mut out = String::new();
        let leading = self.leader.load(std::sync::atomic::Ordering::SeqCst);
        let _ = writeln!(
            out,
            "# HELP otf_leader 1 while this replica runs the dispatcher.\n# TYPE otf_leader gauge\notf_leader {}",
            u8::from(leading)
        );
        out.push_str("# HELP otf_agents Agents by pool and status.\n# TYPE otf_agents gauge\n");
        for ((pool, status), n) in g.agents() {
            let _ = writeln!(out, "otf_agents{{pool=\"{pool}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP otf_runs Runs by status.\n# TYPE otf_runs gauge\n");
        for (status, n) in g.runs() {
            let _ = writeln!(out, "otf_runs{{status=\"{status}\"}} {n}");
        }
        out.push_str(
            "# HELP otf_jobs Jobs that are not final, by status and phase.\n# TYPE otf_jobs gauge\n",
        );
        for ((status, phase), n) in g.jobs() {
            let _ = writeln!(out, "otf_jobs{{status=\"{status}\",phase=\"{phase}\"}} {n}");
        }
        // What autoscalers read, per pool.
        let pools = g.pools(now);
        let families: [(&str, &str, PoolValue); 4] = [
            (
                "otf_pool_jobs_queued",
                "Jobs waiting for an agent of the pool.",
                |q| q.queued,
            ),
            (
                "otf_pool_jobs_running",
                "Jobs allocated to or running on an agent of the pool.",
                |q| q.running,
            ),
            (
                "otf_pool_oldest_queued_seconds",
                "How long the pool's oldest queued job has waited.",
                |q| q.oldest_queued_seconds,
            ),
            (
                "otf_pool_capacity",
                "Free job slots of the pool's live, undrained agents.",
                |q| q.capacity,
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (pool, q) in &pools {
                let _ = writeln!(out, "{name}{{pool=\"{pool}\"}} {}", value(q));
            }
        }
        Some(out)
    }

    /// The text exposition of the counters, followed by `gauges`.
    /// Show the SSH server's numbers from now on.
    pub fn set_ssh(&self, stats: std::sync::Arc<otf_ssh::Stats>) {
        let _ = self.ssh.set(stats);
    }

    fn render_ssh(&self, out: &mut String) {
        let Some(ssh) = self.ssh.get() else {
            return;
        };
        let _ = write!(
            out,
            "# HELP otf_ssh_sessions TUI sessions open over SSH.\n# TYPE otf_ssh_sessions gauge\n\
             otf_ssh_sessions {}\n\
             # HELP otf_ssh_connections SSH connections open (logged in or not).\n# TYPE otf_ssh_connections gauge\n\
             otf_ssh_connections {}\n\
             # HELP otf_ssh_refused_keys_total Public keys refused at SSH login.\n# TYPE otf_ssh_refused_keys_total counter\n\
             otf_ssh_refused_keys_total {}\n",
            ssh.sessions(),
            ssh.connections(),
            ssh.refused()
        );
    }

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
        self.render_ssh(&mut out);
        out
    }
}
