//! Scheduler scale: allocating 100,000 queued jobs over 10,000 agents in 100
//! pools, and the cost of one scheduling event (a job finishes, the freed
//! agent gets the next job of its pool, a new job is queued) with 1k, 10k and
//! 100k jobs queued. Prints the ratio of per-event cost at 100k vs 1k (target
//! <= 2; a design that rescans everything per event lands near 100).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use otf_core::agent::AgentStatus;
use otf_core::clock::Timestamp;
use otf_core::ids::{AgentId, JobId, PoolId};
use otf_core::job::JobStatus;
use otf_core::scheduler::{AgentSlot, JobSlot, PoolKey, Scheduler};

const POOLS: usize = 100;
const AGENTS: usize = 10_000;

fn pool(p: usize) -> PoolKey {
    Some(
        format!("apool-{p:016}")
            .parse::<PoolId>()
            .expect("valid id"),
    )
}

fn agent_id(n: usize) -> AgentId {
    format!("agent-{n:016}").parse().expect("valid id")
}

fn job_id(n: usize) -> JobId {
    format!("job-{n:016}").parse().expect("valid id")
}

fn queued(n: usize) -> JobSlot {
    JobSlot {
        selector: Default::default(),
        id: job_id(n),
        pool: pool(n % POOLS),
        status: JobStatus::Unallocated,
        agent: None,
        queued_at: Timestamp(n as i64),
        affinity: None,
    }
}

fn with_agents(max_jobs: u32) -> Scheduler {
    let mut s = Scheduler::new();
    for n in 0..AGENTS {
        s.upsert_agent(AgentSlot {
            labels: Default::default(),
            id: agent_id(n),
            pool: pool(n % POOLS),
            status: AgentStatus::Idle,
            max_jobs,
            last_seen: Timestamp(n as i64),
            drained: false,
        });
    }
    s
}

/// Every agent busy with one job, `queued` more jobs waiting.
struct Steady {
    s: Scheduler,
    /// The job each agent holds.
    held: Vec<JobId>,
    next: usize,
    victim: usize,
}

impl Steady {
    fn new(queued_jobs: usize) -> Self {
        let mut s = with_agents(1);
        for n in 0..AGENTS + queued_jobs {
            s.upsert_job(queued(n));
        }
        let mut held = vec![job_id(0); AGENTS];
        for a in s.allocate_all() {
            let idx: usize = a.agent.as_str()[6..].parse().expect("numeric");
            held[idx] = a.job;
        }
        assert_eq!(s.queued_len(), queued_jobs);
        Steady {
            s,
            held,
            next: AGENTS + queued_jobs,
            victim: 0,
        }
    }

    /// One scheduling event.
    fn event(&mut self) {
        let a = self.victim % AGENTS;
        self.victim = self.victim.wrapping_add(7919);
        let p = pool(a % POOLS);
        let done = self.held[a].clone();
        self.s.upsert_job(JobSlot {
            selector: Default::default(),
            id: done,
            pool: p.clone(),
            status: JobStatus::Finished,
            agent: Some(agent_id(a)),
            queued_at: Timestamp(0),
            affinity: None,
        });
        let allocs = self.s.allocate(&p);
        debug_assert_eq!(allocs.len(), 1);
        if let Some(al) = allocs.into_iter().next() {
            self.held[a] = al.job;
        }
        // Keep the queue length steady: a new job arrives in the same pool.
        let n = self.next - self.next % POOLS + POOLS + a % POOLS;
        self.next = n + 1;
        self.s.upsert_job(queued(n));
    }
}

/// Median time of one event over `batches` batches of `per_batch` events.
fn per_event(queued_jobs: usize, batches: usize, per_batch: usize) -> Duration {
    let mut st = Steady::new(queued_jobs);
    let mut samples: Vec<Duration> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                st.event();
            }
            t.elapsed() / per_batch as u32
        })
        .collect();
    samples.sort();
    black_box(&st.s);
    samples[samples.len() / 2]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    if bench_mode {
        c = c.sample_size(10).measurement_time(Duration::from_secs(5));
    }

    c.bench_function(
        "allocate 100k queued jobs over 10k agents in 100 pools",
        |b| {
            b.iter_batched(
                || {
                    let mut s = with_agents(10);
                    for n in 0..100_000 {
                        s.upsert_job(queued(n));
                    }
                    s
                },
                |mut s| {
                    let allocs = s.allocate_all();
                    assert_eq!(allocs.len(), 100_000);
                    allocs
                },
                BatchSize::PerIteration,
            )
        },
    );

    let mut group = c.benchmark_group("one scheduling event");
    for queued_jobs in [1_000, 10_000, 100_000] {
        let mut st = Steady::new(queued_jobs);
        group.bench_function(format!("{queued_jobs} queued"), |b| b.iter(|| st.event()));
    }
    group.finish();
    c.final_summary();

    // The ratio, measured here in one process, interleaved to share noise.
    let (batches, per_batch) = if bench_mode { (41, 20_000) } else { (3, 1_000) };
    let small = per_event(1_000, batches, per_batch);
    let large = per_event(100_000, batches, per_batch);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    println!(
        "per-event cost: {:.0} ns at 1k queued, {:.0} ns at 100k queued; ratio 100k/1k = {ratio:.2} (target <= 2)",
        small.as_nanos() as f64,
        large.as_nanos() as f64
    );
}
