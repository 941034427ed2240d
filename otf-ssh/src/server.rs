//! The SSH server: the accept loop (a connection cap, a deadline to log
//! in), public-key authentication against the authorized keys, and one
//! russh handler per connection that gives each session channel with a
//! terminal the TUI and refuses everything else with a message: commands
//! (`ssh host cmd`), subsystems (sftp), port, agent and X11 forwarding.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyEvent};
use otf_core::auth::Subject;
use otf_tui::client::Api;
use otf_tui::input::InputParser;
use otf_tui::remote::{RemoteSize, SessionOptions};
use otf_tui::theme::Theme;
use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Config, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Pty};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::authorized_keys::{AuthorizedKey, AuthorizedKeys};
use crate::host_key::HostKey;
use crate::stats::{SessionCount, Stats};

/// Gives each session the API it works through, as its key's subject.
pub trait SessionApi: Send + Sync + 'static {
    /// The API of a session of `subject`, connected from `peer`.
    fn api(&self, subject: Subject, peer: Option<SocketAddr>) -> Arc<dyn Api>;
}

/// The SSH server's settings.
pub struct SshConfig {
    pub host_key: HostKey,
    /// Who may enter, and the file it was read from (watched).
    pub keys: watch::Receiver<Arc<AuthorizedKeys>>,
    /// What the TUI's title says it is connected to.
    pub title: String,
    /// A connection must have logged in within this.
    pub login_timeout: Duration,
    /// Connections at once; more are closed at once.
    pub max_connections: usize,
}

/// Session channels one connection may have open.
const MAX_CHANNELS: usize = 8;

/// Key events waiting for the TUI; past it the connection waits.
const INPUT_EVENTS: usize = 256;

fn russh_config(host_key: &HostKey) -> Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    Config {
        server_id: russh::SshId::Standard(
            concat!("SSH-2.0-otfd_", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods,
        keys: vec![host_key.key.clone()],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        // A dead peer is noticed by its missing keepalive answers, and its
        // sessions freed; a live one may stay as long as it likes.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..Config::default()
    }
}

/// Serve SSH on `listener` until `shutdown` resolves; then every
/// connection is told so and closed.
pub async fn serve(
    listener: TcpListener,
    config: SshConfig,
    apis: Arc<dyn SessionApi>,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) {
    let russh = Arc::new(russh_config(&config.host_key));
    let shared = Arc::new(Shared {
        keys: config.keys,
        apis,
        title: config.title,
        count: SessionCount(stats),
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "ssh: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        if shared.count.0.connections() >= config.max_connections {
            tracing::warn!(%peer, max = config.max_connections, "ssh: too many connections; closing a new one");
            drop(socket);
            continue;
        }
        let (russh, shared, stopped) = (russh.clone(), shared.clone(), stopped.clone());
        let login_timeout = config.login_timeout;
        connections.spawn(connection(
            socket,
            peer,
            russh,
            shared,
            login_timeout,
            stopped,
        ));
    }
    let _ = stop.send(true);
    // Each connection disconnects at once; bound the wait anyway.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// What every connection shares.
struct Shared {
    keys: watch::Receiver<Arc<AuthorizedKeys>>,
    apis: Arc<dyn SessionApi>,
    title: String,
    count: SessionCount,
}

async fn connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    russh: Arc<Config>,
    shared: Arc<Shared>,
    login_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let _counted = shared.count.connect();
    let (logged_in_tx, mut logged_in) = watch::channel(false);
    let handler = Connection {
        shared: shared.clone(),
        peer,
        key: None,
        logged_in: logged_in_tx,
        channels: HashMap::new(),
    };
    let session = match tokio::time::timeout(
        login_timeout,
        russh::server::run_stream(russh, socket, handler),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "ssh: connection setup failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "ssh: no SSH handshake in time; closed");
            return;
        }
    };
    let handle = session.handle();
    let deadline = tokio::time::sleep(login_timeout);
    tokio::pin!(deadline, session);
    let mut waiting_login = true;
    loop {
        tokio::select! {
            r = &mut session => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "ssh: connection ended");
                }
                return;
            }
            _ = &mut deadline, if waiting_login => {
                if !*logged_in.borrow() {
                    tracing::info!(%peer, "ssh: not logged in within {} s; disconnecting", login_timeout.as_secs());
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "log in took too long".into(), String::new())
                        .await;
                    return;
                }
                waiting_login = false;
            }
            r = logged_in.changed(), if waiting_login => {
                if r.is_err() || *logged_in.borrow() {
                    waiting_login = false;
                }
            }
            r = stopped.changed() => {
                if r.is_err() || *stopped.borrow() {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "otfd is shutting down".into(), String::new())
                        .await;
                    return;
                }
            }
        }
    }
}

/// One channel: its terminal (once asked for) and, once its TUI runs, where
/// its input goes.
struct ChannelState {
    size: Option<RemoteSize>,
    no_color: bool,
    parser: InputParser,
    input: Option<mpsc::Sender<io::Result<TermEvent>>>,
}

/// The handler of one connection.
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// The key it logged in with.
    key: Option<AuthorizedKey>,
    logged_in: watch::Sender<bool>,
    channels: HashMap<ChannelId, ChannelState>,
}

const NO_COMMANDS: &str = "otfd runs no commands over SSH: connect without one \
                           (`ssh -p PORT HOST`) to open the administrator's TUI";

impl Connection {
    fn lookup(&self, key: &PublicKey) -> Option<AuthorizedKey> {
        self.shared.keys.borrow().find(key).cloned()
    }

    /// Say `text` on the channel's stderr, end it with status 1.
    fn refuse(&self, channel: ChannelId, text: &str, session: &mut Session) {
        let _ = session.extended_data(channel, 1, format!("{text}\r\n").into_bytes());
        let _ = session.exit_status_request(channel, 1);
        let _ = session.eof(channel);
        let _ = session.close(channel);
    }

    /// Hand key events to the channel's TUI (waiting while it is behind).
    async fn deliver(&mut self, channel: ChannelId, events: Vec<TermEvent>) {
        let Some(tx) = self.channels.get(&channel).and_then(|c| c.input.clone()) else {
            return;
        };
        for e in events {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        // An unknown key is refused before the client proves it holds it,
        // so that it may offer its next one.
        if self.lookup(key).is_some() {
            return Ok(Auth::Accept);
        }
        let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
        tracing::info!(peer = %self.peer, user, %fingerprint, "ssh: refused a key not in the authorized keys");
        self.shared.count.0.refuse();
        Ok(Auth::reject())
    }

    async fn auth_publickey(&mut self, user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        match self.lookup(key) {
            Some(k) => {
                tracing::info!(peer = %self.peer, user, fingerprint = %k.fingerprint, access = %k.access(), line = k.line, "ssh: logged in");
                self.key = Some(k);
                let _ = self.logged_in.send(true);
                Ok(Auth::Accept)
            }
            None => {
                let fingerprint = key.fingerprint(russh::keys::HashAlg::Sha256);
                tracing::warn!(peer = %self.peer, user, %fingerprint, "ssh: a key not in the authorized keys was refused");
                self.shared.count.0.refuse();
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4,
                    reason: format!("at most {MAX_CHANNELS} sessions per connection"),
                })
                .await;
            return Ok(());
        }
        self.channels.insert(
            channel.id(),
            ChannelState {
                size: None,
                no_color: false,
                parser: InputParser::new(),
                input: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (w, h) = terminal_size(col_width, row_height);
        match self.channels.get_mut(&channel) {
            Some(c) => {
                c.size = Some(RemoteSize::new(w, h));
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client's NO_COLOR (with `SendEnv NO_COLOR`); nothing else
        // of its environment means anything here.
        if name == "NO_COLOR" && !value.is_empty() {
            if let Some(c) = self.channels.get_mut(&channel) {
                c.no_color = true;
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let Some(size) = state.size.clone() else {
            self.refuse(
                channel,
                "otfd's SSH server shows the administrator's TUI, which needs a terminal: \
                 connect with `ssh -t`",
                session,
            );
            return Ok(());
        };
        if state.input.is_some() {
            return Ok(());
        }
        // The file may have changed since the login.
        let key = self.key.as_ref().and_then(|k| {
            self.shared
                .keys
                .borrow()
                .find(&k.key)
                .filter(|now| now.organization == k.organization)
                .cloned()
        });
        let Some(key) = key else {
            self.refuse(
                channel,
                "your key is no longer in otfd's authorized keys",
                session,
            );
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(INPUT_EVENTS);
        state.input = Some(tx.clone());
        let theme = Theme {
            color: !state.no_color,
        };
        let start = crate::session::Start {
            handle: session.handle(),
            channel,
            api: self.shared.apis.api(key.subject(), Some(self.peer)),
            size,
            input: rx,
            input_tx: tx.downgrade(),
            keys: self.shared.keys.clone(),
            key: key.clone(),
            options: SessionOptions {
                title: self.shared.title.clone(),
                theme,
            },
            count: self.shared.count.clone(),
        };
        tracing::info!(peer = %self.peer, fingerprint = %key.fingerprint, access = %key.access(), "ssh: TUI session opened");
        tokio::spawn(async move {
            crate::session::run(start).await;
            tracing::info!(fingerprint = %key.fingerprint, "ssh: TUI session closed");
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, command = %String::from_utf8_lossy(data), "ssh: refused a command");
        session.channel_success(channel)?;
        self.refuse(channel, NO_COMMANDS, session);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, subsystem = name, "ssh: refused a subsystem");
        let _ = session.extended_data(
            channel,
            1,
            format!("otfd serves no subsystem ({name}) over SSH\r\n").into_bytes(),
        );
        session.channel_failure(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "ssh: refused agent forwarding");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, address, port = *port, "ssh: refused remote port forwarding");
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, host, port, "ssh: refused port forwarding");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "otfd does not forward ports".into(),
            })
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "otfd does not forward sockets".into(),
            })
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (w, h) = terminal_size(col_width, row_height);
        if let Some(size) = self.channels.get(&channel).and_then(|c| c.size.clone()) {
            size.set(w, h);
            self.deliver(channel, vec![TermEvent::Resize(w, h)]).await;
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let keys: Vec<KeyEvent> = match self.channels.get_mut(&channel) {
            Some(c) => c.parser.feed(data),
            None => return Ok(()),
        };
        self.deliver(channel, keys.into_iter().map(TermEvent::Key).collect())
            .await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No more input: the session ends as if its terminal closed.
        if let Some(c) = self.channels.get_mut(&channel) {
            c.input = None;
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// A terminal size as the TUI takes it: at least 1×1, at most what a u16
/// holds; 0 (unknown) is 80×24.
fn terminal_size(cols: u32, rows: u32) -> (u16, u16) {
    let fit = |v: u32, default: u16| {
        if v == 0 {
            default
        } else {
            u16::try_from(v).unwrap_or(u16::MAX)
        }
    };
    (fit(cols, 80), fit(rows, 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(terminal_size(0, 0), (80, 24));
        assert_eq!(terminal_size(100, 30), (100, 30));
        assert_eq!(terminal_size(1 << 20, 5), (u16::MAX, 5));
    }
}
