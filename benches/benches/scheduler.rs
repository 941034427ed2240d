//! Scheduler scale: allocating 100,000 queued jobs over 10,000 agents in 100
//! pools, and the cost of one scheduling event (a job finishes, the freed
//! agent gets the next job of its pool, a new job is queued) with 1k, 10k and
//! 100k jobs queued. Prints the ratio of per-event cost at 100k vs 1k (target
//! <= 2; a design that rescans everything per event lands near 100), then
//! the same with agent labels and job selectors: 10 label combinations at
//! 1k queued against 1,000 at 100k.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use otf_core::agent::AgentStatus;
use otf_core::clock::Timestamp;
use otf_core::ids::{AgentId, JobId, PoolId};
use otf_core::job::JobStatus;
use otf_core::labels::Labels;
use otf_core::scheduler::{AgentSlot, JobSlot, PoolKey, Scheduler};

const POOLS: usize = 100;
const AGENTS: usize = 10_000;
const SMALL: Combos = Combos {
    regions: 10,
    zones: 1,
};
const LARGE: Combos = Combos {
    regions: 20,
    zones: 50,
};

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

/// Label combinations of the fleet (regions × zones); None: no labels.
#[derive(Clone, Copy)]
struct Combos {
    regions: usize,
    zones: usize,
}

impl Combos {
    fn count(self) -> usize {
        self.regions * self.zones
    }

    /// Agent `n`'s labels.
    fn agent(self, n: usize) -> Labels {
        let idx = (n / POOLS + 7 * (n % POOLS)) % self.count();
        let (r, z) = (idx % self.regions, idx / self.regions);
        Labels::from_pairs([("region", format!("r{r}")), ("zone", format!("z{z}"))])
            .expect("valid labels")
    }

    /// Job `n`'s selector: a quarter select nothing, half a region, a
    /// quarter a region and a zone, always those of an agent of its pool.
    fn job(self, n: usize) -> Labels {
        let labels = self.agent((n / POOLS) % (AGENTS / POOLS) * POOLS + n % POOLS);
        let keep = match n % 4 {
            0 => 0,
            1 | 2 => 1,
            _ => 2,
        };
        Labels::from_pairs(labels.iter().take(keep)).expect("valid labels")
    }
}

fn queued(n: usize, selector: Labels) -> JobSlot {
    JobSlot {
        id: job_id(n),
        pool: pool(n % POOLS),
        status: JobStatus::Unallocated,
        agent: None,
        queued_at: Timestamp(n as i64),
        affinity: None,
        selector,
    }
}

fn with_agents(max_jobs: u32, combos: Option<Combos>) -> Scheduler {
    let mut s = Scheduler::new();
    for n in 0..AGENTS {
        s.upsert_agent(AgentSlot {
            id: agent_id(n),
            pool: pool(n % POOLS),
            status: AgentStatus::Idle,
            max_jobs,
            last_seen: Timestamp(n as i64),
            drained: false,
            labels: combos.map(|c| c.agent(n)).unwrap_or_default(),
        });
    }
    s
}

/// Every agent busy with one job (when one it may take exists), `queued`
/// more jobs waiting.
struct Steady {
    s: Scheduler,
    /// The job each agent holds.
    held: Vec<Option<JobId>>,
    /// The selector of each active job.
    selectors: HashMap<JobId, Labels>,
    next: usize,
    victim: usize,
}

impl Steady {
    fn new(queued_jobs: usize, combos: Option<Combos>) -> Self {
        let mut s = with_agents(1, combos);
        let mut selectors = HashMap::new();
        for n in 0..AGENTS + queued_jobs {
            let sel = combos.map(|c| c.job(n)).unwrap_or_default();
            selectors.insert(job_id(n), sel.clone());
            s.upsert_job(queued(n, sel));
        }
        let mut held = vec![None; AGENTS];
        for a in s.allocate_all() {
            held[index(&a.agent)] = Some(a.job);
        }
        if combos.is_none() {
            assert_eq!(s.queued_len(), queued_jobs);
        }
        Steady {
            s,
            held,
            selectors,
            next: AGENTS + queued_jobs,
            victim: 0,
        }
    }

    /// One scheduling event: an agent's job finishes, the pool allocates,
    /// and for each job allocated a new one with its selector arrives.
    fn event(&mut self) {
        let mut a = self.victim % AGENTS;
        while self.held[a].is_none() {
            a = (a + 1) % AGENTS;
        }
        self.victim = self.victim.wrapping_add(7919);
        let p = pool(a % POOLS);
        let done = self.held[a].take().expect("held");
        let selector = self.selectors.remove(&done).unwrap_or_default();
        self.s.upsert_job(JobSlot {
            id: done,
            pool: p.clone(),
            status: JobStatus::Finished,
            agent: Some(agent_id(a)),
            queued_at: Timestamp(0),
            affinity: None,
            selector,
        });
        for al in self.s.allocate(&p) {
            let sel = self.selectors.get(&al.job).cloned().unwrap_or_default();
            self.held[index(&al.agent)] = Some(al.job);
            // Keep the queue steady: a new job like it arrives in the pool.
            let n = self.next - self.next % POOLS + POOLS + a % POOLS;
            self.next = n + 1;
            self.selectors.insert(job_id(n), sel.clone());
            self.s.upsert_job(queued(n, sel));
        }
    }
}

fn index(a: &AgentId) -> usize {
    a.as_str()[6..].parse().expect("numeric")
}

/// Median time of one event over `batches` batches of `per_batch` events.
fn per_event(
    queued_jobs: usize,
    combos: Option<Combos>,
    batches: usize,
    per_batch: usize,
) -> Duration {
    let mut st = Steady::new(queued_jobs, combos);
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
                    let mut s = with_agents(10, None);
                    for n in 0..100_000 {
                        s.upsert_job(queued(n, Labels::new()));
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
        let mut st = Steady::new(queued_jobs, None);
        group.bench_function(format!("{queued_jobs} queued"), |b| b.iter(|| st.event()));
    }
    let mut st = Steady::new(100_000, Some(LARGE));
    group.bench_function("100000 queued, 1000 label combinations", |b| {
        b.iter(|| st.event())
    });
    group.finish();
    c.final_summary();

    // The ratio, measured here in one process, interleaved to share noise.
    let (batches, per_batch) = if bench_mode { (41, 20_000) } else { (3, 1_000) };
    let small = per_event(1_000, None, batches, per_batch);
    let large = per_event(100_000, None, batches, per_batch);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    println!(
        "per-event cost: {:.0} ns at 1k queued, {:.0} ns at 100k queued; ratio 100k/1k = {ratio:.2} (target <= 2)",
        small.as_nanos() as f64,
        large.as_nanos() as f64
    );
    // With labels, the number of label combinations grows with the queue.
    let small = per_event(1_000, Some(SMALL), batches, per_batch);
    let large = per_event(100_000, Some(LARGE), batches, per_batch);
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    println!(
        "with labels: {:.0} ns at 1k queued and {} label combinations, {:.0} ns at 100k queued and {} label combinations; ratio = {ratio:.2} (target <= 2)",
        small.as_nanos() as f64,
        SMALL.count(),
        large.as_nanos() as f64,
        LARGE.count(),
    );
}
