//! A TCP proxy the tests put between the app and PostgreSQL or Redis, to cut
//! and heal connections for real.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::AbortHandle;

/// What the proxy does to the bytes it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// A partition that drops packets: connections stay open, nothing gets
    /// through (held, as TCP would retransmit it, until the mode changes).
    Blackhole,
    /// Every reply from upstream is late by a random delay in this range (ms).
    Slow(u64, u64),
    /// Connections opened before this one (by sequence number) are stalled
    /// like `Blackhole`; newer ones pass: one half-dead connection.
    StallBefore(u64),
}

pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    mode: watch::Sender<Mode>,
    opened: Arc<AtomicU64>,
    upstream: Arc<std::sync::Mutex<String>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `upstream` ("host:port").
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let (mode, _) = watch::channel(Mode::Pass);
        let opened = Arc::new(AtomicU64::new(0));
        let upstream = Arc::new(std::sync::Mutex::new(upstream));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (c, cs, m, o, up) = (cut.clone(), conns.clone(), mode.clone(), opened.clone(), upstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(client); // refused, as a dead server would
                    continue;
                }
                let seq = o.fetch_add(1, Ordering::SeqCst);
                let upstream = up.lock().unwrap().clone();
                let (up_mode, down_mode) = (m.subscribe(), m.subscribe());
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::select! {
                            () = pump(cr, sw, up_mode, seq, false) => {}
                            () = pump(sr, cw, down_mode, seq, true) => {}
                        }
                    }
                });
                cs.lock().await.push(task.abort_handle());
            }
        })
        .abort_handle();
        Self { port, cut, mode, opened, upstream, conns, accept }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    /// Back to passing everything (and accepting connections).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.mode.send_replace(Mode::Pass);
    }

    /// Sends new connections to `upstream` and drops the open ones, as a
    /// DNS name or virtual IP moved to another server would.
    pub async fn retarget(&self, upstream: String) {
        *self.upstream.lock().unwrap() = upstream;
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Stalls every connection open now; later ones pass.
    pub fn stall_open_connections(&self) {
        self.set(Mode::StallBefore(self.opened.load(Ordering::SeqCst)));
    }

    /// Connections accepted so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` chunk by chunk, as `mode` says.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>, seq: u64, down: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            let now = *mode.borrow_and_update();
            match now {
                Mode::Blackhole => {}
                Mode::StallBefore(before) if seq < before => {}
                Mode::Slow(lo, hi) if down => {
                    // The fault itself: replies come late.
                    let ms = lo + rand::random::<u64>() % (hi - lo + 1);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    break;
                }
                _ => break,
            }
            if mode.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut conns) = self.conns.try_lock() {
            for c in conns.drain(..) {
                c.abort();
            }
        }
    }
}

/// A real redis-server of the test's own, on a free port.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
    /// Its working directory (a replica writes its master's snapshot
    /// there); a persistent server's snapshot is loaded again at restart.
    dir: std::path::PathBuf,
    persistent: bool,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_in(false).await
    }

    /// A server that loads its last snapshot (`SAVE`) when restarted, as a
    /// Redis with persistence does after a crash or a restore.
    pub async fn start_persistent() -> Self {
        Self::start_in(true).await
    }

    async fn start_in(persistent: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("calcache-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Self { port: crate::helpers::closed_port(), child: None, dir, persistent };
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A Redis user `name` (password `pw`) that may do everything but run
    /// `command`: a real server-side refusal of one kind of write (its URL
    /// is `redis://<name>:pw@127.0.0.1:<port>`).
    pub async fn user_without(&self, name: &str, command: &str) -> String {
        let deny = format!("-{command}");
        redis::cmd("ACL")
            .arg(&["SETUSER", name, "on", ">pw", "~*", "&*", "+@all", deny.as_str()][..])
            .query_async::<()>(&mut self.admin().await)
            .await
            .unwrap();
        format!("redis://{name}:pw@127.0.0.1:{}", self.port)
    }

    /// A connection for driving the server from the test (CONFIG, ACL, …).
    pub async fn admin(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Starts (again) on the same port: empty, or from its last snapshot
    /// when persistent.
    pub async fn restart(&mut self) {
        self.kill();
        if !self.persistent {
            // Empty: whatever a replication left behind goes too.
            let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        }
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(&self.dir).args(["--dbfilename", "dump.rdb"]);
        let child = cmd.stdout(std::process::Stdio::null()).spawn().expect("redis-server runs");
        self.child = Some(child);
        let port = self.port;
        // If another test took the port in between, redis-server exits: say so.
        if let Some(child) = self.child.as_mut() {
            let exited = tokio::time::timeout(std::time::Duration::from_millis(300), async {
                let mut poll = tokio::time::interval(std::time::Duration::from_millis(20));
                loop {
                    poll.tick().await;
                    if let Ok(Some(status)) = child.try_wait() {
                        return status;
                    }
                }
            })
            .await;
            assert!(exited.is_err(), "redis-server on port {port} exited: {exited:?}");
        }
        crate::helpers::eventually(std::time::Duration::from_secs(10), "redis-server accepts", || async move {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
