//! A tiny scripted IMAP server for what the real Dovecot can't be made to do (refuse STARTTLS,
//! advertise extensions it lacks). It answers each tagged command from a table and records
//! every line it received, so a test can prove what the client did and did not send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct ScriptedImap {
    pub port: u16,
    received: Arc<Mutex<Vec<String>>>,
}

impl ScriptedImap {
    /// `replies` maps a command (upper case, e.g. "STARTTLS", or with its arguments exactly as
    /// sent, e.g. `EXAMINE "Projects"`) to the untagged lines to send before the tagged status,
    /// and that status ("OK …", "NO …", "BAD …"). Unknown commands get `BAD unknown command`.
    pub async fn start(greeting: &str, replies: HashMap<String, (Vec<String>, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (rec, greeting, replies) = (received.clone(), greeting.to_string(), Arc::new(replies));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (rec, greeting, replies) = (rec.clone(), greeting.clone(), replies.clone());
                tokio::spawn(async move {
                    let (r, mut w) = socket.into_split();
                    let mut lines = BufReader::new(r).lines();
                    if w.write_all(format!("{greeting}\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    while let Ok(Some(line)) = lines.next_line().await {
                        rec.lock().expect("lock").push(line.clone());
                        let mut parts = line.splitn(3, ' ');
                        let tag = parts.next().unwrap_or("*").to_string();
                        let cmd = parts.next().unwrap_or("").to_ascii_uppercase();
                        let args = parts.next().unwrap_or("");
                        // "EXAMINE \"Projects\"" before "EXAMINE".
                        let (untagged, status) = replies
                            .get(&format!("{cmd} {args}"))
                            .or_else(|| replies.get(&cmd))
                            .cloned()
                            .unwrap_or_else(|| (vec![], "BAD unknown command".to_string()));
                        let mut out = String::new();
                        for u in untagged {
                            out.push_str(&u);
                            out.push_str("\r\n");
                        }
                        out.push_str(&format!("{tag} {status}\r\n"));
                        if w.write_all(out.as_bytes()).await.is_err() || cmd == "LOGOUT" {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, received }
    }

    /// Every command line received so far.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}
