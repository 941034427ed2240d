use super::*;

fn pool(n: u8) -> PoolKey {
    Some(format!("apool-{:016}", n).parse().unwrap())
}

fn agent_id(n: u32) -> AgentId {
    format!("agent-{n:016}").parse().unwrap()
}

fn job_id(n: u32) -> JobId {
    format!("job-{n:016}").parse().unwrap()
}

fn agent(n: u32, pool: PoolKey, max_jobs: u32, last_seen: i64) -> AgentSlot {
    AgentSlot {
        id: agent_id(n),
        pool,
        status: AgentStatus::Idle,
        max_jobs,
        last_seen: Timestamp(last_seen),
        drained: false,
        labels: Labels::new(),
    }
}

fn queued(n: u32, pool: PoolKey, at: i64) -> JobSlot {
    JobSlot {
        id: job_id(n),
        pool,
        status: JobStatus::Unallocated,
        agent: None,
        queued_at: Timestamp(at),
        affinity: None,
        selector: Labels::new(),
    }
}

/// The wait reason of the first waiting job of pool `n`.
fn reason(s: &Scheduler, n: u8) -> Option<WaitReason> {
    s.waiting(&pool(n)).first().map(|(_, r)| *r)
}

/// Renders allocations as `job->agent` numbers for readable assertions.
fn show(allocs: &[Allocation]) -> String {
    allocs
        .iter()
        .map(|a| {
            format!(
                "{}->{}",
                a.job.as_str()[4..].trim_start_matches('0'),
                a.agent.as_str()[6..].trim_start_matches('0')
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn jobs_go_only_to_agents_of_their_pool() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 5, 0));
    s.upsert_agent(agent(2, pool(2), 5, 0));
    s.upsert_agent(agent(3, None, 5, 0));
    s.upsert_job(queued(1, pool(2), 1));
    s.upsert_job(queued(2, None, 2));
    s.upsert_job(queued(3, pool(9), 3));
    assert_eq!(show(&s.allocate_all()), "2->3 1->2");
    assert_eq!(s.waiting(&pool(9)), vec![(job_id(3), WaitReason::NoAgent)]);
}

#[test]
fn least_loaded_then_most_recently_seen_then_id() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 5, 100));
    s.upsert_agent(agent(2, pool(1), 5, 200));
    s.upsert_agent(agent(3, pool(1), 5, 200));
    for n in 1..=4 {
        s.upsert_job(queued(n, pool(1), n as i64));
    }
    // 2 and 3 seen last (tie broken by id), then 1; then back to 2.
    assert_eq!(show(&s.allocate(&pool(1))), "1->2 2->3 3->1 4->2");
}

#[test]
fn first_come_first_served_and_capacity_respected() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 1, 0));
    s.upsert_job(queued(2, pool(1), 20));
    s.upsert_job(queued(1, pool(1), 10));
    s.upsert_job(queued(3, pool(1), 30));
    assert_eq!(show(&s.allocate(&pool(1))), "1->1");
    assert_eq!(
        s.waiting(&pool(1)),
        vec![
            (job_id(2), WaitReason::NoCapacity),
            (job_id(3), WaitReason::NoCapacity)
        ]
    );
    // The job finishes: capacity frees up for the next in line.
    s.upsert_job(JobSlot {
        status: JobStatus::Finished,
        agent: Some(agent_id(1)),
        ..queued(1, pool(1), 10)
    });
    assert_eq!(show(&s.allocate(&pool(1))), "2->1");
}

#[test]
fn unschedulable_agents_get_nothing() {
    let mut s = Scheduler::new();
    for (n, st) in [
        (1, AgentStatus::Unknown),
        (2, AgentStatus::Errored),
        (3, AgentStatus::Exited),
    ] {
        s.upsert_agent(AgentSlot {
            status: st,
            ..agent(n, pool(1), 5, 0)
        });
    }
    s.upsert_job(queued(1, pool(1), 0));
    assert!(s.allocate(&pool(1)).is_empty());
    assert_eq!(reason(&s, 1), Some(WaitReason::NoAgent));
    s.upsert_agent(AgentSlot {
        status: AgentStatus::Busy,
        ..agent(1, pool(1), 5, 0)
    });
    assert_eq!(show(&s.allocate(&pool(1))), "1->1");
}

#[test]
fn reallocated_job_keeps_its_place_at_the_front() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 1, 0));
    s.upsert_job(queued(1, pool(1), 1));
    s.upsert_job(queued(2, pool(1), 2));
    assert_eq!(show(&s.allocate(&pool(1))), "1->1");
    // Agent 1 is lost before starting job 1: the job comes back unallocated.
    s.upsert_agent(AgentSlot {
        status: AgentStatus::Unknown,
        ..agent(1, pool(1), 1, 0)
    });
    s.upsert_job(queued(1, pool(1), 1));
    s.upsert_agent(agent(2, pool(1), 1, 0));
    assert_eq!(show(&s.allocate(&pool(1))), "1->2");
    assert_eq!(s.load(&agent_id(1)), 0);
    assert_eq!(s.load(&agent_id(2)), 1);
}

#[test]
fn jobs_already_held_count_against_capacity_even_before_the_agent_is_known() {
    let mut s = Scheduler::new();
    // Rebuild order may deliver the job before its agent.
    s.upsert_job(JobSlot {
        status: JobStatus::Running,
        agent: Some(agent_id(1)),
        ..queued(1, pool(1), 1)
    });
    s.upsert_agent(agent(1, pool(1), 1, 0));
    s.upsert_job(queued(2, pool(1), 2));
    assert!(s.allocate(&pool(1)).is_empty());
    assert_eq!(s.load(&agent_id(1)), 1);
}

#[test]
fn repeated_upserts_are_idempotent() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 2, 0));
    let held = JobSlot {
        status: JobStatus::Allocated,
        agent: Some(agent_id(1)),
        ..queued(1, pool(1), 1)
    };
    s.upsert_job(held.clone());
    s.upsert_job(held.clone());
    s.upsert_job(JobSlot {
        status: JobStatus::Running,
        ..held
    });
    s.upsert_agent(agent(1, pool(1), 2, 5));
    assert_eq!(s.load(&agent_id(1)), 1);
    assert_eq!(s.assignments().len(), 1);
}

#[test]
fn removed_agent_frees_its_pool_but_remembers_load() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 1, 0));
    s.upsert_job(queued(1, pool(1), 1));
    assert_eq!(s.allocate(&pool(1)).len(), 1);
    s.remove_agent(&agent_id(1));
    s.upsert_job(queued(2, pool(1), 2));
    assert!(s.allocate(&pool(1)).is_empty());
    assert_eq!(s.pools_with_queue(), vec![pool(1)]);
    assert_eq!(s.queued_len(), 1);
}

#[test]
fn sync_adds_missed_jobs_and_drops_ended_ones() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 2, 0));
    // Job 1 was allocated by this scheduler; job 2's creation event was
    // missed; job 1 then ended without its event arriving.
    s.upsert_job(queued(1, pool(1), 1));
    assert_eq!(show(&s.allocate(&pool(1))), "1->1");
    assert_eq!(s.load(&agent_id(1)), 1);
    s.sync_jobs(vec![queued(2, pool(1), 2)]);
    assert_eq!(s.load(&agent_id(1)), 0);
    assert_eq!(show(&s.allocate(&pool(1))), "2->1");
    // A fresh read that agrees with the index changes nothing.
    let held = JobSlot {
        status: JobStatus::Allocated,
        agent: Some(agent_id(1)),
        ..queued(2, pool(1), 2)
    };
    s.sync_jobs(vec![held]);
    assert_eq!(s.load(&agent_id(1)), 1);
    assert_eq!(s.queued_len(), 0);
}

#[test]
fn drained_agents_get_nothing_and_the_queue_says_why() {
    let mut s = Scheduler::new();
    s.upsert_agent(AgentSlot {
        drained: true,
        ..agent(1, pool(1), 2, 0)
    });
    s.upsert_job(queued(1, pool(1), 1));
    assert!(s.allocate(&pool(1)).is_empty());
    assert_eq!(reason(&s, 1), Some(WaitReason::Drained));
    // One undrained agent at capacity: the reason is capacity again.
    s.upsert_agent(agent(2, pool(1), 0, 0));
    assert_eq!(reason(&s, 1), Some(WaitReason::NoCapacity));
    // Undrain: it takes the job.
    s.upsert_agent(agent(1, pool(1), 2, 0));
    assert_eq!(show(&s.allocate(&pool(1))), "1->1");
}

#[test]
fn a_pinned_job_waits_for_its_agent_even_drained_and_is_freed_when_it_goes() {
    let mut s = Scheduler::new();
    s.upsert_agent(AgentSlot {
        drained: true,
        ..agent(1, pool(1), 1, 0)
    });
    s.upsert_agent(agent(2, pool(1), 1, 9));
    // Job 1 is kept for the drained agent 1; job 2 goes to agent 2.
    s.upsert_job(JobSlot {
        affinity: Some(agent_id(1)),
        ..queued(1, pool(1), 1)
    });
    s.upsert_job(queued(2, pool(1), 2));
    assert_eq!(show(&s.allocate(&pool(1))), "1->1 2->2");
    // A pinned job whose agent is busy waits for it, not for others.
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, pool(1), 1, 0));
    s.upsert_agent(agent(2, pool(1), 1, 9));
    s.upsert_job(JobSlot {
        status: JobStatus::Running,
        agent: Some(agent_id(1)),
        ..queued(9, pool(1), 0)
    });
    s.upsert_job(JobSlot {
        affinity: Some(agent_id(1)),
        ..queued(1, pool(1), 1)
    });
    assert!(s.allocate_all().is_empty(), "agent 2 must not take it");
    // The agent goes: the job is free for any agent.
    s.upsert_agent(AgentSlot {
        status: AgentStatus::Exited,
        ..agent(1, pool(1), 1, 0)
    });
    assert_eq!(show(&s.allocate_all()), "1->2");
    // An affinity to an agent already gone never pins.
    let mut s = Scheduler::new();
    s.upsert_agent(agent(2, pool(1), 1, 9));
    s.upsert_job(JobSlot {
        affinity: Some(agent_id(7)),
        ..queued(1, pool(1), 1)
    });
    assert_eq!(show(&s.allocate(&pool(1))), "1->2");
}

fn labels(s: &str) -> Labels {
    s.parse().unwrap()
}

fn labelled(n: u32, pool: PoolKey, max_jobs: u32, last_seen: i64, l: &str) -> AgentSlot {
    AgentSlot {
        labels: labels(l),
        ..agent(n, pool, max_jobs, last_seen)
    }
}

fn selecting(n: u32, pool: PoolKey, at: i64, sel: &str) -> JobSlot {
    JobSlot {
        selector: labels(sel),
        ..queued(n, pool, at)
    }
}

#[test]
fn jobs_go_only_to_agents_whose_labels_include_their_selector() {
    let mut s = Scheduler::new();
    s.upsert_agent(labelled(1, pool(1), 5, 30, "region=eu"));
    s.upsert_agent(labelled(2, pool(1), 5, 20, "gpu=true,region=us"));
    s.upsert_agent(labelled(3, pool(1), 5, 10, ""));
    s.upsert_job(selecting(1, pool(1), 1, "region=us"));
    s.upsert_job(selecting(2, pool(1), 2, "gpu=true,region=us"));
    s.upsert_job(selecting(3, pool(1), 3, ""));
    s.upsert_job(selecting(4, pool(1), 4, "region=ap"));
    s.upsert_job(selecting(5, pool(1), 5, "region=eu"));
    // Job 3 selects nothing: any agent; agent 1 is least loaded and seen last.
    assert_eq!(show(&s.allocate(&pool(1))), "1->2 2->2 3->1 5->1");
    assert_eq!(
        s.waiting(&pool(1)),
        vec![(job_id(4), WaitReason::NoMatchingAgent)]
    );
    let sentence = WaitReason::NoMatchingAgent.describe(Some("gpu"), &labels("region=ap"));
    assert_eq!(sentence, "no agent of pool gpu has labels region=ap");
    // An agent with the labels registers: it takes the job.
    s.upsert_agent(labelled(4, pool(1), 1, 0, "region=ap,zone=c"));
    assert_eq!(show(&s.allocate(&pool(1))), "4->4");
}

#[test]
fn a_job_no_agent_matches_does_not_hold_up_the_queue() {
    let mut s = Scheduler::new();
    s.upsert_agent(labelled(1, pool(1), 1, 0, "region=eu"));
    s.upsert_job(selecting(1, pool(1), 1, "region=us"));
    s.upsert_job(selecting(2, pool(1), 2, ""));
    s.upsert_job(selecting(3, pool(1), 3, "region=eu"));
    assert_eq!(show(&s.allocate_all()), "2->1");
    assert_eq!(
        s.waiting(&pool(1)),
        vec![
            (job_id(1), WaitReason::NoMatchingAgent),
            (job_id(3), WaitReason::NoCapacity)
        ]
    );
    // Within what an agent may take, first come first served still holds.
    s.upsert_job(JobSlot {
        status: JobStatus::Finished,
        agent: Some(agent_id(1)),
        ..queued(2, pool(1), 2)
    });
    assert_eq!(show(&s.allocate_all()), "3->1");
}

#[test]
fn wait_reasons_are_those_of_the_agents_that_match() {
    let mut s = Scheduler::new();
    s.upsert_job(selecting(1, pool(1), 1, "gpu=true"));
    assert_eq!(reason(&s, 1), Some(WaitReason::NoAgent));
    s.upsert_agent(labelled(1, pool(1), 1, 0, "gpu=false"));
    assert_eq!(reason(&s, 1), Some(WaitReason::NoMatchingAgent));
    s.upsert_agent(AgentSlot {
        drained: true,
        ..labelled(2, pool(1), 1, 0, "gpu=true")
    });
    assert_eq!(reason(&s, 1), Some(WaitReason::Drained));
    s.upsert_agent(labelled(2, pool(1), 0, 0, "gpu=true"));
    assert_eq!(reason(&s, 1), Some(WaitReason::NoCapacity));
    // The matching agent goes offline: nothing matches again.
    s.upsert_agent(AgentSlot {
        status: AgentStatus::Unknown,
        ..labelled(2, pool(1), 1, 0, "gpu=true")
    });
    assert_eq!(reason(&s, 1), Some(WaitReason::NoMatchingAgent));
    s.remove_agent(&agent_id(1));
    assert_eq!(reason(&s, 1), Some(WaitReason::NoAgent));
    assert!(s.allocate_all().is_empty());
}

#[test]
fn a_changed_selector_moves_a_waiting_job() {
    let mut s = Scheduler::new();
    s.upsert_agent(labelled(1, pool(1), 1, 0, "region=eu"));
    s.upsert_job(selecting(1, pool(1), 1, "region=us"));
    assert!(s.allocate_all().is_empty());
    s.upsert_job(selecting(1, pool(1), 1, "region=eu"));
    assert_eq!(s.queued_len(), 1);
    assert_eq!(show(&s.allocate_all()), "1->1");
    assert_eq!(s.queued_len(), 0);
}

#[test]
fn the_server_runner_ignores_selectors() {
    let mut s = Scheduler::new();
    s.upsert_agent(agent(1, None, 1, 0));
    s.upsert_job(selecting(1, None, 1, "region=eu"));
    assert_eq!(show(&s.allocate_all()), "1->1");
}

#[test]
fn a_pinned_job_is_not_subject_to_its_selector_until_unpinned() {
    let mut s = Scheduler::new();
    s.upsert_agent(labelled(1, pool(1), 1, 0, "region=eu"));
    s.upsert_agent(labelled(2, pool(1), 1, 0, "region=us"));
    s.upsert_job(JobSlot {
        status: JobStatus::Running,
        agent: Some(agent_id(1)),
        ..queued(9, pool(1), 0)
    });
    s.upsert_job(JobSlot {
        affinity: Some(agent_id(1)),
        ..selecting(1, pool(1), 1, "region=eu")
    });
    assert!(s.allocate_all().is_empty());
    // Its agent goes: it joins the queue of its selector, which agent 2
    // does not match.
    s.upsert_agent(AgentSlot {
        status: AgentStatus::Exited,
        ..labelled(1, pool(1), 1, 0, "region=eu")
    });
    assert!(s.allocate_all().is_empty());
    assert_eq!(reason(&s, 1), Some(WaitReason::NoMatchingAgent));
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const PAIRS: [&str; 4] = ["region=eu", "region=us", "gpu=true", "zone=a"];

    fn label_set() -> impl Strategy<Value = Labels> {
        proptest::sample::subsequence(PAIRS.to_vec(), 0..=2).prop_map(|v| {
            // region=eu and region=us conflict: keep the first.
            let mut seen = std::collections::BTreeMap::new();
            for p in v {
                let (k, val) = p.split_once('=').unwrap();
                seen.entry(k.to_string()).or_insert(val.to_string());
            }
            Labels::from_pairs(seen).unwrap()
        })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Agent {
            n: u32,
            pool: u8,
            status: u8,
            max_jobs: u32,
            drained: bool,
            labels: Labels,
        },
        RemoveAgent(u32),
        Queue {
            n: u32,
            pool: u8,
            selector: Labels,
        },
        Finish(u32),
        Allocate,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..6u32, 0..3u8, 0..5u8, 0..3u32, proptest::bool::weighted(0.2), label_set())
                .prop_map(|(n, pool, status, max_jobs, drained, labels)| Op::Agent { n, pool, status, max_jobs, drained, labels }),
            1 => (0..6u32).prop_map(Op::RemoveAgent),
            4 => (0..16u32, 0..3u8, label_set()).prop_map(|(n, pool, selector)| Op::Queue { n, pool, selector }),
            2 => (0..16u32).prop_map(Op::Finish),
            2 => Just(Op::Allocate),
        ]
    }

    /// Pool 0 is the server runner.
    fn key(p: u8) -> PoolKey {
        (p > 0).then(|| pool(p).unwrap())
    }

    #[derive(Default)]
    struct Model {
        agents: HashMap<AgentId, AgentSlot>,
        /// Active jobs and who holds them.
        jobs: HashMap<JobId, (JobSlot, Option<AgentId>)>,
        clock: i64,
    }

    impl Model {
        fn load(&self, a: &AgentId) -> u32 {
            self.jobs
                .values()
                .filter(|(_, h)| h.as_ref() == Some(a))
                .count() as u32
        }

        fn may_take(&self, a: &AgentSlot, j: &JobSlot) -> bool {
            a.pool == j.pool && (j.pool.is_none() || a.labels.includes(&j.selector))
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        /// A job is never allocated to an agent lacking its labels (or out of
        /// its pool, drained, offline or full), and after allocating no job
        /// waits while an agent that may take it has room; the wait reason
        /// agrees with the agents.
        #[test]
        fn labels_and_capacity_are_respected(ops in proptest::collection::vec(op(), 1..80)) {
            let mut s = Scheduler::new();
            let mut m = Model::default();
            for op in ops {
                m.clock += 1;
                match op {
                    Op::Agent { n, pool, status, max_jobs, drained, labels } => {
                        let status = AgentStatus::ALL[status as usize % AgentStatus::ALL.len()];
                        let pool = key(pool);
                        // Pool and labels are fixed at registration.
                        let (pool, labels) = match m.agents.get(&agent_id(n)) {
                            Some(a) => (a.pool.clone(), a.labels.clone()),
                            None => (pool, labels),
                        };
                        let slot = AgentSlot { status, drained, labels, pool, ..agent(n, None, max_jobs, m.clock) };
                        m.agents.insert(slot.id.clone(), slot.clone());
                        s.upsert_agent(slot);
                    }
                    Op::RemoveAgent(n) => {
                        m.agents.remove(&agent_id(n));
                        s.remove_agent(&agent_id(n));
                    }
                    Op::Queue { n, pool, selector } => {
                        let id = job_id(n);
                        if m.jobs.get(&id).is_some_and(|(_, h)| h.is_some()) {
                            continue;
                        }
                        // A waiting job may change its selector, not its pool.
                        let pool = m.jobs.get(&id).map_or(key(pool), |(j, _)| j.pool.clone());
                        let slot = JobSlot { selector, ..queued(n, pool, m.clock) };
                        m.jobs.insert(id, (slot.clone(), None));
                        s.upsert_job(slot);
                    }
                    Op::Finish(n) => {
                        if let Some((j, holder)) = m.jobs.remove(&job_id(n)) {
                            s.upsert_job(JobSlot { status: JobStatus::Finished, agent: holder, ..j });
                        }
                    }
                    Op::Allocate => {
                        for a in s.allocate_all() {
                            let agent = m.agents.get(&a.agent).expect("allocated to a known agent");
                            let (job, holder) = m.jobs.get(&a.job).expect("allocated an active job").clone();
                            prop_assert!(holder.is_none(), "{} allocated twice", a.job);
                            prop_assert!(m.may_take(agent, &job), "{} to {} lacking {}", a.job, a.agent, job.selector);
                            prop_assert!(agent.status.is_schedulable() && !agent.drained);
                            prop_assert!(m.load(&a.agent) < agent.max_jobs, "{} over capacity", a.agent);
                            m.jobs.get_mut(&a.job).unwrap().1 = Some(a.agent.clone());
                        }
                        for p in 0..3 {
                            let waiting = s.waiting(&key(p));
                            let queued = m.jobs.values().filter(|(j, h)| j.pool == key(p) && h.is_none()).count();
                            prop_assert_eq!(waiting.len(), queued);
                            for (id, reason) in waiting {
                                let (job, _) = &m.jobs[&id];
                                let live: Vec<&AgentSlot> = m.agents.values()
                                    .filter(|a| a.pool == job.pool && a.status.is_schedulable())
                                    .collect();
                                let matching: Vec<&&AgentSlot> = live.iter().filter(|a| m.may_take(a, job)).collect();
                                let room = matching.iter().any(|a| !a.drained && m.load(&a.id) < a.max_jobs);
                                prop_assert!(!room, "{id} waits although an agent may take it");
                                let expected = if live.is_empty() {
                                    WaitReason::NoAgent
                                } else if matching.is_empty() {
                                    WaitReason::NoMatchingAgent
                                } else if matching.iter().all(|a| a.drained) {
                                    WaitReason::Drained
                                } else {
                                    WaitReason::NoCapacity
                                };
                                prop_assert_eq!(reason, expected, "{}", id);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn wait_reasons_round_trip() {
    crate::enums::assert_round_trip(WaitReason::ALL);
}
