//! A TCP proxy in front of a real server, for tests that need the network to fail: it counts
//! the bytes the server sends and can cut every connection, or refuse new ones, on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FlakyProxy {
    pub port: u16,
    open: Arc<AtomicU64>,
    max_open: Arc<AtomicU64>,
    from_server: Arc<AtomicU64>,
    refusing: Arc<AtomicBool>,
    trip_at: Arc<AtomicU64>,
    cut: Arc<watch::Sender<u64>>,
}

impl FlakyProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let from_server = Arc::new(AtomicU64::new(0));
        let refusing = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = watch::channel(0u64);
        let cut = Arc::new(cut);
        let trip_at = Arc::new(AtomicU64::new(u64::MAX));
        let upstream = upstream.to_string();
        let (fs, rf) = (from_server.clone(), refusing.clone());
        let open = Arc::new(AtomicU64::new(0));
        let max_open = Arc::new(AtomicU64::new(0));
        let (op, mo) = (open.clone(), max_open.clone());
        let trip = Trip {
            at: trip_at.clone(),
            refusing: refusing.clone(),
            cut: cut.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if rf.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let now = op.fetch_add(1, Ordering::SeqCst) + 1;
                mo.fetch_max(now, Ordering::SeqCst);
                let (fs, trip, cut_rx, op) = (fs.clone(), trip.clone(), cut_rx.clone(), op.clone());
                tokio::spawn(async move {
                    pipe(client, server, fs, trip, cut_rx).await;
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            open,
            max_open,
            from_server,
            refusing,
            trip_at,
            cut,
        }
    }

    /// Once the server has sent `bytes` in all, cuts every connection and refuses new ones
    /// (until `refuse(false)`): a server that dies mid-transfer, at a deterministic point.
    pub fn fail_after(&self, bytes: u64) {
        self.trip_at.store(bytes, Ordering::SeqCst);
    }

    /// Connections open now, and the most that were open at once.
    pub fn connections(&self) -> (u64, u64) {
        (
            self.open.load(Ordering::SeqCst),
            self.max_open.load(Ordering::SeqCst),
        )
    }

    /// Bytes the server has sent through the proxy.
    pub fn bytes_from_server(&self) -> u64 {
        self.from_server.load(Ordering::SeqCst)
    }

    /// Drops every open connection, as a server restart or a network failure would.
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Refuses (closes at once) new connections while `true`.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Trip {
    at: Arc<AtomicU64>,
    refusing: Arc<AtomicBool>,
    cut: Arc<watch::Sender<u64>>,
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    from_server: Arc<AtomicU64>,
    trip: Trip,
    mut cut: watch::Receiver<u64>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await.unwrap_or(0);
            if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await.unwrap_or(0);
            let total = from_server.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            if total >= trip.at.load(Ordering::SeqCst) {
                trip.at.store(u64::MAX, Ordering::SeqCst);
                trip.refusing.store(true, Ordering::SeqCst);
                trip.cut.send_modify(|c| *c += 1);
                break;
            }
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    cut.borrow_and_update();
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.changed() => {}
    }
}
