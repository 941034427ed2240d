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
    }
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
    assert_eq!(
        s.waiting(&pool(9)),
        (vec![job_id(3)], Some(WaitReason::NoAgent))
    );
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
        (vec![job_id(2), job_id(3)], Some(WaitReason::NoCapacity))
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
    assert_eq!(s.waiting(&pool(1)).1, Some(WaitReason::NoAgent));
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
    assert_eq!(s.waiting(&pool(1)).1, Some(WaitReason::Drained));
    // One undrained agent at capacity: the reason is capacity again.
    s.upsert_agent(agent(2, pool(1), 0, 0));
    assert_eq!(s.waiting(&pool(1)).1, Some(WaitReason::NoCapacity));
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
