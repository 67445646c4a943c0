//! Users and mail of the local Dovecot that `scripts/services-up.sh` runs: one passwd file
//! per user under `<run>/users/`, Maildir (LAYOUT=fs) under `<run>/mail/<domain>/<local>/`.
//! Writing Maildir files directly seeds ~3× faster than IMAP APPEND, and Dovecot picks the
//! files up at the next SELECT (the file's mtime becomes the INTERNALDATE).

use crate::GeneratedMessage;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `MAILFLEET_RUN_DIR`, default `/var/lib/mailfleet-dev`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("MAILFLEET_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/mailfleet-dev"))
}

/// The test CA that signed the local servers' certificate.
pub fn ca_file() -> PathBuf {
    run_dir().join("tls/ca.pem")
}

/// A mail user of the local Dovecot.
#[derive(Debug, Clone)]
pub struct LocalMailbox {
    pub address: String,
    pub password: String,
    run: PathBuf,
    uid: u32,
    gid: u32,
}

impl LocalMailbox {
    /// Creates (or re-creates, with a new password) the user. No reload is needed.
    pub fn create(address: &str, password: &str) -> io::Result<Self> {
        let address = address.trim().to_lowercase();
        if !address.contains('@') || address.contains(['/', ':', '\n']) || address.starts_with('.')
        {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad address"));
        }
        if password.is_empty() || password.contains([':', '\n']) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad password"));
        }
        let run = run_dir();
        let users = run.join("users");
        if !users.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing: run scripts/services-up.sh first",
                    users.display()
                ),
            ));
        }
        let (uid, gid) = vmail_ids()?;
        let tmp = users.join(format!(".tmp.{}", unique()));
        {
            let mut f = fs::File::create(&tmp)?;
            writeln!(f, "{address}:{{PLAIN}}{password}::::::")?;
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, users.join(&address))?;
        Ok(Self {
            address,
            password: password.to_owned(),
            run,
            uid,
            gid,
        })
    }

    pub fn maildir(&self) -> PathBuf {
        let (local, domain) = self.address.rsplit_once('@').expect("checked in create");
        self.run
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    fn folder_dir(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            self.maildir()
        } else {
            self.maildir().join(folder)
        }
    }

    /// Writes the messages into their folders as Maildir files.
    pub fn seed(&self, messages: &[GeneratedMessage]) -> io::Result<()> {
        for m in messages {
            self.write_message(&m.folder, &m.raw, m.internal_date.into(), m.seen, m.flagged)?;
        }
        Ok(())
    }

    /// Delivers one message into `folder` (created when missing).
    pub fn write_message(
        &self,
        folder: &str,
        raw: &[u8],
        internal_date: SystemTime,
        seen: bool,
        flagged: bool,
    ) -> io::Result<()> {
        let dir = self.folder_dir(folder);
        for sub in ["cur", "new", "tmp"] {
            self.make_dir_all(&dir.join(sub))?;
        }
        let base = unique();
        let tmp = dir.join("tmp").join(&base);
        fs::write(&tmp, raw)?;
        let f = fs::File::options().write(true).open(&tmp)?;
        f.set_modified(internal_date)?;
        drop(f);
        chown(&tmp, Some(self.uid), Some(self.gid))?;
        // Maildir flags are sorted letters: F(lagged), S(een).
        let mut flags = String::new();
        if flagged {
            flags.push('F');
        }
        if seen {
            flags.push('S');
        }
        let name = format!("{base},S={len},W={len}:2,{flags}", len = raw.len());
        fs::rename(&tmp, dir.join("cur").join(name))
    }

    fn make_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent()
            && parent != self.run.join("mail")
        {
            self.make_dir_all(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        chown(dir, Some(self.uid), Some(self.gid))
    }

    /// The files of `folder` (new and cur) whose header names this Message-ID (without
    /// angle brackets), with their Maildir flags (`S` for `\Seen`, …).
    pub fn messages_with_id(&self, folder: &str, message_id: &str) -> Vec<(PathBuf, String)> {
        let needle = format!("<{message_id}>").to_ascii_lowercase();
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = fs::read_dir(self.folder_dir(folder).join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(raw) = fs::read(e.path()) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                let header = text.split("\r\n\r\n").next().unwrap_or_default();
                let hit = header
                    .lines()
                    .any(|l| l.starts_with("message-id:") && l.contains(&needle));
                if hit {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let flags = name
                        .rsplit_once(":2,")
                        .map(|(_, f)| f.to_owned())
                        .unwrap_or_default();
                    out.push((e.path(), flags));
                }
            }
        }
        out
    }

    /// Removes the user and all of its mail.
    pub fn delete(&self) -> io::Result<()> {
        let _ = fs::remove_file(self.run.join("users").join(&self.address));
        let user_dir = self.maildir();
        match fs::remove_dir_all(user_dir.parent().expect("maildir has a parent")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn vmail_ids() -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "vmail" {
            let uid = f[2]
                .parse()
                .map_err(|_| io::Error::other("bad vmail uid"))?;
            let gid = f[3]
                .parse()
                .map_err(|_| io::Error::other("bad vmail gid"))?;
            return Ok((uid, gid));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "no vmail user: run scripts/services-up.sh first",
    ))
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.mailfleet",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
