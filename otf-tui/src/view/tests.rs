//! Screens without a server: state built through `update` (keys and
//! answers), drawn on ratatui's `TestBackend`, asserted on the buffer.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;

use crate::app::{
    update, Action, App, Effect, Loaded, PoolDetail, QueueView, Request, RunDetail, Screen,
};
use crate::client::RunAction;
use crate::keys;
use crate::model::*;
use crate::theme::Theme;

const NOW: i64 = 1_764_344_649_000;

/// The frame as text, one string per row.
fn render_at(app: &App, theme: Theme, w: u16, h: u16) -> (Vec<String>, ratatui::buffer::Buffer) {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| super::draw(f, app, theme)).expect("draw");
    let buf = t.backend().buffer().clone();
    let rows = (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect();
    (rows, buf)
}

fn screen(app: &App) -> String {
    render_at(app, Theme { color: true }, 80, 24).0.join("\n")
}

/// Press keys (a string of characters, `\n` for Enter, `\x1b` for Esc);
/// the effects of the last key.
fn press(app: &mut App, keys: &str) -> Vec<Effect> {
    let mut effects = vec![];
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\x1b' => KeyCode::Esc,
            '↓' => KeyCode::Down,
            '↑' => KeyCode::Up,
            c => KeyCode::Char(c),
        };
        let action = keys::action(app, KeyEvent::new(code, KeyModifiers::NONE));
        effects = action.map(|a| update(app, a)).unwrap_or_default();
    }
    effects
}

fn answer(app: &mut App, l: Loaded) -> Vec<Effect> {
    update(app, Action::Loaded(Box::new(l)))
}

fn ws(id: &str, name: &str, mode: ExecutionModeKind, pool: Option<&str>) -> Workspace {
    Workspace {
        agent_selector: Default::default(),
        id: id.into(),
        name: name.into(),
        execution_mode: mode,
        pool: pool.map(str::to_string),
    }
}

fn pool1(scoped: bool, allowed: &[&str], assigned: &[&str]) -> Pool {
    Pool {
        id: "apool-1".into(),
        name: "pool1".into(),
        organization_scoped: scoped,
        allowed: allowed.iter().map(|s| s.to_string()).collect(),
        assigned: assigned.iter().map(|s| s.to_string()).collect(),
        excluded: Vec::new(),
        agent_count: 1,
        drained: false,
    }
}

fn agent(name: &str, status: AgentStatus, jobs: u64) -> Agent {
    Agent {
        labels: Default::default(),
        id: format!("agent-{name}"),
        name: name.into(),
        status,
        ip_address: "10.0.0.7".into(),
        last_ping_at: Some(NOW - 3_000),
        version: "0.1.0".into(),
        max_jobs: 2,
        current_jobs: jobs,
        drained: false,
    }
}

fn workspaces() -> Vec<Workspace> {
    vec![
        ws("ws-dev", "dev", ExecutionModeKind::Agent, Some("apool-1")),
        ws("ws-prod", "prod", ExecutionModeKind::Remote, None),
    ]
}

/// An app on the organization `acme`.
fn in_acme() -> App {
    let mut app = App::new("http://otfd:8080", NOW);
    answer(
        &mut app,
        Loaded::Organizations(Ok(vec![Organization {
            name: "acme".into(),
        }])),
    );
    press(&mut app, "\n");
    app
}

fn on_pool(detail: PoolDetail) -> App {
    let mut app = in_acme();
    answer(
        &mut app,
        Loaded::Pools {
            org: "acme".into(),
            result: Ok(vec![]),
        },
    );
    let effects = press(&mut app, "p");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::Pools { org: "acme".into() })]
    );
    answer(
        &mut app,
        Loaded::Pools {
            org: "acme".into(),
            result: Ok(vec![detail.pool.clone()]),
        },
    );
    let effects = press(&mut app, "\n");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::PoolDetail {
            org: "acme".into(),
            id: "apool-1".into()
        })]
    );
    answer(
        &mut app,
        Loaded::PoolDetail {
            id: "apool-1".into(),
            result: Ok(detail),
        },
    );
    app
}

#[test]
fn pool_screen_marks_granted_and_assigned_workspaces_and_shows_live_agents() {
    let app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(false, &["ws-dev"], &["ws-dev"]),
        agents: vec![
            agent("a1", AgentStatus::Idle, 0),
            agent("a2", AgentStatus::Busy, 1),
        ],
        workspaces: workspaces(),
    });
    let s = screen(&app);
    assert!(s.contains("Agent pool pool1"), "{s}");
    assert!(s.contains("Access: granted workspaces only"), "{s}");
    let dev = s.lines().find(|l| l.starts_with("dev")).expect(&s);
    assert!(dev.contains("granted") && dev.contains("assigned"), "{dev}");
    // prod is neither granted nor assigned: not listed.
    assert!(!s.lines().any(|l| l.starts_with("prod")), "{s}");
    // The agents have a cursor (on the first): x/u drain the selected one.
    let a1 = s.lines().find(|l| l.starts_with("> a1")).expect(&s);
    for want in ["idle", "3s ago", "10.0.0.7", "0.1.0", "0/2"] {
        assert!(a1.contains(want), "{want} in {a1}");
    }
    assert!(s.contains("busy"), "{s}");
    // The footer names this screen's keys.
    assert!(
        s.lines().last().expect("footer").contains("e edit grants"),
        "{s}"
    );
}

#[test]
fn grant_a_workspace_then_save_sends_the_whole_allow_list() {
    let mut app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(true, &[], &[]),
        agents: vec![],
        workspaces: workspaces(),
    });
    assert!(screen(&app).contains("organization-scoped"));
    press(&mut app, "e");
    // Rows: all / specific / dev / prod.
    press(&mut app, "↓↓ ");
    let s = screen(&app);
    assert!(s.contains("(•) Grant access to specific workspaces"), "{s}");
    assert!(s.contains("[x] dev") && s.contains("[ ] prod"), "{s}");
    let effects = press(&mut app, "s");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::SetGrants {
            excluded: Default::default(),
            pool: "apool-1".into(),
            organization_scoped: false,
            allowed: vec!["ws-dev".into()],
        })]
    );
    // Saved: back on the pool, refreshed.
    let effects = answer(
        &mut app,
        Loaded::GrantsSaved {
            pool: "apool-1".into(),
            result: Ok(pool1(false, &["ws-dev"], &[])),
        },
    );
    assert!(matches!(app.screen(), Screen::Pool { .. }));
    assert!(matches!(
        effects[..],
        [Effect::Fetch(Request::PoolDetail { .. })]
    ));
    assert!(screen(&app).contains("saved the grants of pool1"));
}

#[test]
fn a_refused_assignment_shows_the_servers_detail() {
    let mut app = in_acme();
    press(&mut app, "w");
    answer(
        &mut app,
        Loaded::Workspaces {
            org: "acme".into(),
            result: Ok((workspaces(), vec![pool1(false, &[], &[])])),
        },
    );
    let s = screen(&app);
    assert!(
        s.contains("dev") && s.contains("agent") && s.contains("pool1"),
        "{s}"
    );
    // prod: settings, agent on pool1, save.
    press(&mut app, "↓e↓↓↓ ");
    let effects = press(&mut app, "s");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::SetMode {
            workspace: "ws-prod".into(),
            mode: ExecutionModeKind::Agent,
            pool: Some("apool-1".into()),
        })]
    );
    answer(
        &mut app,
        Loaded::ModeSet {
            workspace: "ws-prod".into(),
            result: Err("agent pool pool1 is not granted to workspace prod".into()),
        },
    );
    let s = screen(&app);
    assert!(s.contains("The execution mode was not changed"), "{s}");
    assert!(s.contains("not granted to workspace prod"), "{s}");
    press(&mut app, "\x1b");
    assert!(app.modal.is_none());
    assert!(matches!(app.screen(), Screen::Settings { .. }));
}

#[test]
fn a_new_token_shows_its_secret_once_and_revoking_asks_first() {
    let mut app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(true, &[], &[]),
        agents: vec![],
        workspaces: workspaces(),
    });
    press(&mut app, "t");
    press(&mut app, "n");
    // An empty description is refused before asking the server.
    assert_eq!(press(&mut app, "\n"), []);
    press(&mut app, "laptop");
    assert_eq!(
        press(&mut app, "\n"),
        [Effect::Fetch(Request::CreateToken {
            pool: "apool-1".into(),
            description: "laptop".into()
        })]
    );
    let token = Token {
        id: "at-1".into(),
        description: "laptop".into(),
        created_at: Some(NOW - 1000),
        last_used_at: None,
    };
    answer(
        &mut app,
        Loaded::TokenCreated {
            pool: "apool-1".into(),
            result: Ok(NewToken {
                token: token.clone(),
                secret: "at-1.s3cr3t".into(),
            }),
        },
    );
    let s = screen(&app);
    assert!(s.contains("Copy it now"), "{s}");
    assert!(s.contains("at-1.s3cr3t"), "{s}");
    press(&mut app, "\n");
    answer(
        &mut app,
        Loaded::Tokens {
            pool: "apool-1".into(),
            result: Ok(vec![token]),
        },
    );
    let s = screen(&app);
    assert!(!s.contains("s3cr3t"), "{s}");
    let row = s.lines().find(|l| l.contains("laptop")).expect(&s);
    assert!(row.contains("1s ago") && row.contains("never"), "{row}");
    press(&mut app, "d");
    assert!(screen(&app).contains("Revoke token \"laptop\"?"));
    assert_eq!(
        press(&mut app, "y"),
        [Effect::Fetch(Request::RevokeToken {
            pool: "apool-1".into(),
            id: "at-1".into()
        })]
    );
}

#[test]
fn deleting_a_pool_with_assigned_workspaces_shows_the_refusal() {
    let mut app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(true, &[], &["ws-dev"]),
        agents: vec![],
        workspaces: workspaces(),
    });
    press(&mut app, "d");
    assert_eq!(
        press(&mut app, "y"),
        [Effect::Fetch(Request::DeletePool {
            id: "apool-1".into()
        })]
    );
    answer(
        &mut app,
        Loaded::PoolDeleted {
            id: "apool-1".into(),
            result: Err("agent pool pool1 is used by workspaces: dev".into()),
        },
    );
    let s = screen(&app);
    assert!(
        s.contains("not deleted") && s.contains("used by workspaces: dev"),
        "{s}"
    );
    assert!(matches!(app.screen(), Screen::Pool { .. }));
}

#[test]
fn the_pool_screen_shows_excluded_workspaces() {
    let app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: Pool {
            excluded: vec!["ws-prod".into()],
            ..pool1(true, &[], &["ws-dev"])
        },
        agents: vec![],
        workspaces: workspaces(),
    });
    let s = screen(&app);
    let prod = s.lines().find(|l| l.starts_with("prod")).expect(&s);
    assert!(prod.contains("excluded"), "{prod}");
    let dev = s.lines().find(|l| l.starts_with("dev")).expect(&s);
    assert!(dev.contains("granted") && dev.contains("assigned"), "{dev}");
}

#[test]
fn a_pool_is_drained_and_undrained_from_its_screen() {
    let mut app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(true, &[], &[]),
        agents: vec![Agent {
            drained: true,
            ..agent("a1", AgentStatus::Busy, 1)
        }],
        workspaces: workspaces(),
    });
    let s = screen(&app);
    assert!(s.contains("DRAIN") && s.contains("drained"), "{s}");
    // x drains the selected agent, X the whole pool.
    assert_eq!(
        press(&mut app, "x"),
        [Effect::Fetch(Request::DrainAgent {
            id: "agent-a1".into(),
            drained: true
        })]
    );
    assert_eq!(
        press(&mut app, "X"),
        [Effect::Fetch(Request::DrainPool {
            id: "apool-1".into(),
            drained: true
        })]
    );
    let effects = answer(
        &mut app,
        Loaded::PoolDrained {
            drained: true,
            result: Ok(Pool {
                drained: true,
                ..pool1(true, &[], &[])
            }),
        },
    );
    assert!(screen(&app).contains("take no new job"), "{}", screen(&app));
    answer(
        &mut app,
        Loaded::AgentDrained {
            drained: false,
            result: Ok(agent("a1", AgentStatus::Busy, 1)),
        },
    );
    assert!(
        screen(&app).contains("agent a1 undrained"),
        "{}",
        screen(&app)
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Fetch(Request::PoolDetail { .. }))),
        "{effects:?}"
    );
    assert_eq!(
        press(&mut app, "U"),
        [Effect::Fetch(Request::DrainPool {
            id: "apool-1".into(),
            drained: false
        })]
    );
}

fn run(status: RunStatus, confirmable: bool) -> Run {
    Run {
        wait_message: Default::default(),
        id: "run-abc".into(),
        status,
        created_at: Some(NOW),
        message: "Queued from otf-tui".into(),
        is_confirmable: confirmable,
        is_discardable: confirmable,
        is_cancelable: !confirmable,
        is_force_cancelable: false,
        error: None,
    }
}

fn phase(status: PhaseStatus, additions: u64) -> Phase {
    Phase {
        status,
        additions,
        changes: 0,
        destructions: 0,
        log_url: "http://otfd/logs".into(),
    }
}

#[test]
fn run_screen_tails_the_log_and_confirms_before_applying() {
    let mut app = in_acme();
    press(&mut app, "w");
    answer(
        &mut app,
        Loaded::Workspaces {
            org: "acme".into(),
            result: Ok((workspaces(), vec![])),
        },
    );
    press(&mut app, "\n");
    let effects = press(&mut app, "n");
    assert_eq!(effects, []);
    press(&mut app, "/tmp/cfg");
    assert_eq!(
        press(&mut app, "\n"),
        [Effect::Fetch(Request::StartRun {
            workspace: "ws-dev".into(),
            dir: "/tmp/cfg".into()
        })]
    );
    let effects = answer(
        &mut app,
        Loaded::RunStarted {
            workspace: "ws-dev".into(),
            result: Ok(run(RunStatus::Planning, false)),
        },
    );
    assert_eq!(
        effects,
        [Effect::Fetch(Request::RunDetail {
            run: "run-abc".into(),
            plan_offset: Some(0),
            apply_offset: Some(0),
        })]
    );
    let detail = |run, plan_log: &[u8]| Loaded::RunDetail {
        run: "run-abc".into(),
        plan_offset: Some(0),
        apply_offset: Some(0),
        result: Ok(RunDetail {
            run,
            plan: Some(phase(PhaseStatus::Running, 0)),
            apply: Some(phase(PhaseStatus::Pending, 0)),
            plan_log: plan_log.to_vec(),
            apply_log: vec![],
        }),
    };
    answer(
        &mut app,
        detail(run(RunStatus::Planning, false), b"\x02Initializing...\n"),
    );
    let s = screen(&app);
    assert!(s.contains("Run run-abc of dev: planning"), "{s}");
    assert!(s.contains("Initializing..."), "{s}");
    assert!(s.contains("log (live)"), "{s}");
    // The next refresh reads on from where the log ended.
    let effects = update(&mut app, Action::Tick(NOW + 1000));
    assert_eq!(
        effects,
        [Effect::Fetch(Request::RunDetail {
            run: "run-abc".into(),
            plan_offset: Some(17),
            apply_offset: Some(0),
        })]
    );
    // A stale answer (read from 0 again) does not duplicate the log.
    answer(
        &mut app,
        detail(run(RunStatus::Planned, true), b"\x02Initializing...\n"),
    );
    assert_eq!(screen(&app).matches("Initializing...").count(), 1);
    // Apply needs a yes.
    press(&mut app, "a");
    assert!(screen(&app).contains("Confirm and apply run run-abc?"));
    assert_eq!(
        press(&mut app, "y"),
        [Effect::Fetch(Request::RunAction {
            run: "run-abc".into(),
            action: RunAction::Apply
        })]
    );
}

#[test]
fn actions_a_run_does_not_allow_are_refused_locally() {
    let mut app = App::new("x", NOW);
    app.stack.push(Screen::Run(crate::screens::RunScreen {
        workspace: "dev".into(),
        id: "run-abc".into(),
        detail: Some(crate::app::RunView {
            run: run(RunStatus::Applied, false),
            plan: Some(phase(PhaseStatus::Finished, 1)),
            apply: Some(phase(PhaseStatus::Finished, 1)),
        }),
        plan_log: crate::app::LogTail {
            bytes: b"\x02plan\x03".to_vec(),
            done: true,
        },
        apply_log: crate::app::LogTail {
            bytes: b"\x02Apply complete!\x03".to_vec(),
            done: true,
        },
        scroll: 0,
    }));
    let s = screen(&app);
    assert!(s.contains("applied") && s.contains("+1 ~0 -0"), "{s}");
    assert!(s.contains("Apply complete!"), "{s}");
    // Finished, logs complete: nothing more to poll.
    assert_eq!(update(&mut app, Action::Tick(NOW)), []);
    assert_eq!(press(&mut app, "D"), []);
    assert!(screen(&app).contains("cannot discard a run that is applied"));
}

#[test]
fn queue_view_says_where_jobs_run_and_why_others_wait() {
    let mut app = in_acme();
    press(&mut app, "b");
    let job = |id: &str, ws: &str, agent: Option<&str>, wait: Option<&str>| Job {
        wait_message: Default::default(),
        id: id.into(),
        run: "run-1".into(),
        workspace: ws.into(),
        pool: Some("apool-1".into()),
        agent_name: agent.map(str::to_string),
        phase: JobPhase::Plan,
        status: if agent.is_some() {
            JobStatus::Running
        } else {
            JobStatus::Unallocated
        },
        wait_reason: wait.map(|w| w.parse().expect("a wait reason")),
    };
    answer(
        &mut app,
        Loaded::Jobs {
            org: "acme".into(),
            result: Ok(QueueView {
                jobs: vec![
                    job("job-1", "ws-dev", Some("a1"), None),
                    job("job-2", "ws-prod", None, Some("no-capacity")),
                    Job {
                        wait_message: Some("no agent of pool pool1 has labels gpu=true".into()),
                        ..job("job-3", "ws-dev", None, Some("no-matching-agent"))
                    },
                ],
                workspaces: workspaces(),
                pools: vec![pool1(true, &[], &[])],
            }),
        },
    );
    let s = screen(&app);
    let dev = s.lines().find(|l| l.contains("dev")).expect(&s);
    assert!(
        dev.contains("running") && dev.contains("pool1") && dev.contains("on a1"),
        "{dev}"
    );
    let prod = s.lines().find(|l| l.contains("prod")).expect(&s);
    assert!(prod.contains("waits: no capacity"), "{prod}");
    let wide = render_at(&app, Theme { color: true }, 160, 24).0.join("\n");
    assert!(
        wide.contains("waits: no agent of pool pool1 has labels gpu=true"),
        "{wide}"
    );
}

#[test]
fn no_color_draws_without_colours_and_any_size_draws() {
    let app = on_pool(PoolDetail {
        queue: Default::default(),
        pool: pool1(false, &["ws-dev"], &["ws-dev"]),
        agents: vec![agent("a1", AgentStatus::Errored, 0)],
        workspaces: workspaces(),
    });
    let (_, buf) = render_at(&app, Theme { color: false }, 80, 24);
    assert!(buf
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
    let (_, buf) = render_at(&app, Theme { color: true }, 80, 24);
    assert!(buf.content().iter().any(|c| c.fg == Color::Red));
    // Resizes: tiny and large terminals draw without panicking.
    for (w, h) in [(20, 5), (1, 1), (200, 60)] {
        render_at(&app, Theme { color: true }, w, h);
    }
}

#[test]
fn help_back_and_quit() {
    let mut app = in_acme();
    press(&mut app, "?");
    let s = screen(&app);
    assert!(s.contains("Help") && s.contains("workspaces"), "{s}");
    press(&mut app, "\x1b");
    assert!(app.modal.is_none());
    press(&mut app, "q");
    assert!(matches!(app.screen(), Screen::Organizations { .. }));
    assert!(!app.quit);
    press(&mut app, "q");
    assert!(app.quit);
}

#[test]
fn organizations_and_creating_one() {
    let mut app = App::new("http://otfd:8080", NOW);
    assert!(screen(&app).contains("loading"));
    answer(&mut app, Loaded::Organizations(Ok(vec![])));
    assert!(screen(&app).contains("press n to create one"));
    press(&mut app, "n");
    press(&mut app, "acme");
    assert!(screen(&app).contains("> acme"));
    assert_eq!(
        press(&mut app, "\n"),
        [Effect::Fetch(Request::CreateOrganization {
            name: "acme".into()
        })]
    );
    answer(
        &mut app,
        Loaded::OrganizationCreated(Ok(Organization {
            name: "acme".into(),
        })),
    );
    let s = screen(&app);
    assert!(
        s.contains("> acme") && s.contains("created organization acme"),
        "{s}"
    );
}

#[test]
fn pool_screen_shows_the_queue_live_with_sparklines_and_agent_labels() {
    let detail = |queued, running| PoolDetail {
        queue: Some(PoolQueue {
            queued,
            running,
            oldest_queued_seconds: 75,
            capacity: 1,
        }),
        pool: pool1(false, &["ws-dev"], &["ws-dev"]),
        agents: vec![Agent {
            labels: "gpu=true,region=eu".into(),
            ..agent("a1", AgentStatus::Busy, 2)
        }],
        workspaces: workspaces(),
    };
    let mut app = on_pool(detail(0, 0));
    for (q, r) in [(1, 1), (3, 2), (6, 2)] {
        app.now += 1_000;
        answer(
            &mut app,
            Loaded::PoolDetail {
                id: "apool-1".into(),
                result: Ok(detail(q, r)),
            },
        );
    }
    let s = screen(&app);
    assert!(
        s.contains("Queue: 6 queued, 2 running, 1 free slots; oldest waits 1m15s"),
        "{s}"
    );
    // The newest reading is the tallest bar of the queued sparkline.
    let lines: Vec<&str> = s.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.starts_with(" queued"))
        .expect(&s);
    // Columns 9..40 hold the queued sparkline: 0, 1, 3, 6 from the left.
    let queued = |l: &str| l.chars().skip(9).take(31).collect::<String>();
    assert_eq!(queued(lines[row]).trim_end(), "   █", "{}", lines[row]);
    assert_eq!(
        queued(lines[row + 1]).trim_end(),
        " ▂██",
        "{}",
        lines[row + 1]
    );
    let wide = render_at(&app, Theme { color: true }, 120, 24).0.join("\n");
    let a1 = wide.lines().find(|l| l.starts_with("> a1")).expect(&wide);
    assert!(a1.contains("gpu=true,region=eu"), "{a1}");
    // Readings older than the window are dropped.
    app.now += crate::app::QUEUE_HISTORY_MS;
    answer(
        &mut app,
        Loaded::PoolDetail {
            id: "apool-1".into(),
            result: Ok(detail(0, 0)),
        },
    );
    let Screen::Pool(crate::screens::PoolScreen { history, .. }) = app.screen() else {
        panic!("on the pool screen");
    };
    assert_eq!(history.len(), 1);
    // Without numbers (otfd has not read the queue yet) the pool still shows.
    answer(
        &mut app,
        Loaded::PoolDetail {
            id: "apool-1".into(),
            result: Ok(PoolDetail {
                queue: None,
                ..detail(0, 0)
            }),
        },
    );
    assert!(screen(&app).contains("Queue: not read yet"));
}

#[test]
fn excluding_a_workspace_of_an_organization_scoped_pool_then_save() {
    let mut app = on_pool(PoolDetail {
        queue: None,
        pool: pool1(true, &[], &[]),
        agents: vec![],
        workspaces: workspaces(),
    });
    press(&mut app, "e");
    // Rows: all / specific / dev / prod: exclude prod.
    press(&mut app, "↓↓↓x");
    let s = screen(&app);
    assert!(s.contains("(•) All workspaces"), "{s}");
    assert!(s.contains("[-] prod (excluded"), "{s}");
    let effects = press(&mut app, "s");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::SetGrants {
            pool: "apool-1".into(),
            organization_scoped: true,
            allowed: vec![],
            excluded: vec!["ws-prod".into()],
        })]
    );
    // x again includes it again; granting an excluded one includes it.
    press(&mut app, "x");
    assert!(screen(&app).contains("[ ] prod"));
    press(&mut app, "x ");
    let s = screen(&app);
    assert!(
        s.contains("[x] prod") && s.contains("(•) Grant access"),
        "{s}"
    );
}

#[test]
fn a_workspaces_agent_selector_is_edited_and_checked_before_sending() {
    let mut app = in_acme();
    press(&mut app, "w");
    let dev = Workspace {
        agent_selector: "region=eu".into(),
        ..ws("ws-dev", "dev", ExecutionModeKind::Agent, Some("apool-1"))
    };
    answer(
        &mut app,
        Loaded::Workspaces {
            org: "acme".into(),
            result: Ok((vec![dev.clone()], vec![pool1(true, &[], &[])])),
        },
    );
    let s = screen(&app);
    let row = s.lines().find(|l| l.contains("dev")).expect(&s);
    assert!(row.contains("region=eu"), "{row}");
    press(&mut app, "l");
    let s = screen(&app);
    assert!(
        s.contains("Agent selector") && s.contains("region=eu"),
        "{s}"
    );
    // A bad selector is refused here; the input stays open.
    assert!(press(&mut app, ",gpu\n").is_empty());
    assert!(app.modal.is_some());
    let flash = app.flash.clone().expect("a message");
    assert!(
        flash.error && flash.text.contains("write key=value"),
        "{flash:?}"
    );
    let effects = press(&mut app, "=true\n");
    assert_eq!(
        effects,
        [Effect::Fetch(Request::SetSelector {
            workspace: "ws-dev".into(),
            selector: "gpu=true,region=eu".into(),
        })]
    );
    let effects = answer(
        &mut app,
        Loaded::SelectorSet {
            workspace: "ws-dev".into(),
            result: Ok(Workspace {
                agent_selector: "gpu=true,region=eu".into(),
                ..dev.clone()
            }),
        },
    );
    assert_eq!(
        effects,
        [Effect::Fetch(Request::Workspaces { org: "acme".into() })]
    );
    assert!(screen(&app).contains("dev: runs go to agents with labels gpu=true,region=eu"));
    // A queued run of the workspace says why it waits.
    press(&mut app, "\n");
    answer(
        &mut app,
        Loaded::Runs {
            workspace: "ws-dev".into(),
            result: Ok(vec![Run {
                wait_message: Some("no agent of pool pool1 has labels gpu=true".into()),
                ..run(RunStatus::PlanQueued, false)
            }]),
        },
    );
    let s = render_at(&app, Theme { color: true }, 160, 24).0.join("\n");
    assert!(
        s.contains("waits: no agent of pool pool1 has labels gpu=true"),
        "{s}"
    );
}
