//! `mailfleet account …`: a CLI client of the coordinator's HTTP API (see docs/api.md).
//!
//! The password is asked without echo, or read from stdin with `--password-stdin`; it is never
//! a flag value and never printed. API errors are printed as `error: <code>: <message>`; the
//! exit code is 2 when the request was refused (4xx, or a usage error) and 1 otherwise.

mod args;
mod ask;
mod client;
mod show;

pub use args::AccountArgs;
use args::{AccountCommand, AddArgs, FoldersArgs, ServerArgs};
use client::{Api, ApiFailure};
use mailfleet_core::Secret;
use mailfleet_core::connection_test::{ConnectionTestResult, TestFailure};
use serde_json::{Value, json};
use show::AccountView;
use std::fmt;

/// A mistake in how the command was called or answered: exit code 2, like clap's.
#[derive(Debug)]
struct Usage(String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Already told on stderr; exit with this code.
#[derive(Debug)]
struct Reported(i32);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// Runs the command; returns the process's exit code.
pub async fn run(args: AccountArgs) -> i32 {
    let Err(e) = execute(args).await else {
        return 0;
    };
    if let Some(f) = e.downcast_ref::<ApiFailure>() {
        eprintln!("error: {f}");
        f.exit_code()
    } else if let Some(Reported(code)) = e.downcast_ref::<Reported>() {
        *code
    } else if let Some(u) = e.downcast_ref::<Usage>() {
        eprintln!("error: {u}");
        2
    } else {
        eprintln!("error: {e:#}");
        1
    }
}

async fn execute(args: AccountArgs) -> anyhow::Result<()> {
    let token = args.api.api_token.clone().ok_or_else(|| {
        Usage("MAILFLEET_API_TOKEN is not set (the bearer token of the coordinator's API)".into())
    })?;
    let user = args
        .api
        .user
        .ok_or_else(|| Usage("MAILFLEET_USER is not set (the id of the user you act as)".into()))?;
    let api = Api::new(&args.api.api_url, token, user)?;
    let json = args.json;
    match args.command {
        AccountCommand::Add(a) => add(&api, json, a).await,
        AccountCommand::Test(s) => test(&api, json, s).await,
        AccountCommand::List => {
            let raw = api.get("/v1/accounts").await?;
            print(json, &raw, |v: Vec<AccountView>| show::accounts(&v))
        }
        AccountCommand::Folders(f) => folders(&api, json, f).await,
        AccountCommand::Reconnect { id, password_stdin } => {
            let password = ask::password(
                "New password (empty keeps the stored one): ",
                password_stdin,
                true,
            )?;
            let body = if password.expose().is_empty() {
                json!({})
            } else {
                json!({ "password": password })
            };
            let raw = api
                .post(&format!("/v1/accounts/{id}/reconnect"), &body)
                .await?;
            print(json, &raw, |a: AccountView| {
                format!("Re-connected; a sync is queued.\n{}", show::account(&a))
            })
        }
        AccountCommand::Primary { id } => {
            let raw = api
                .post(&format!("/v1/accounts/{id}/primary"), &json!({}))
                .await?;
            print(json, &raw, |_: Value| {
                format!("Account {id} is now your primary account.\n")
            })
        }
        AccountCommand::Delete { id, yes } => delete(&api, json, id, yes).await,
    }
}

/// The raw JSON with `--json`, else what `human` makes of it.
fn print<T: serde::de::DeserializeOwned>(
    json: bool,
    raw: &Value,
    human: impl FnOnce(T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(raw)?);
    } else {
        let v = serde_json::from_value(raw.clone())
            .map_err(|e| anyhow::anyhow!("unexpected answer from the API: {e}"))?;
        print!("{}", human(v));
    }
    Ok(())
}

impl ServerArgs {
    fn password(&self) -> anyhow::Result<Secret<String>> {
        ask::password(
            &format!("Password for {}: ", self.email),
            self.password_stdin,
            false,
        )
    }

    /// `POST /v1/connection-tests`: the answer as it came, and read.
    async fn test(
        &self,
        api: &Api,
        password: &Secret<String>,
    ) -> anyhow::Result<(Value, ConnectionTestResult)> {
        let body = json!({
            "provider": "imap",
            "email": self.email,
            "username": self.username,
            "password": password,
            "imap": self.imap(),
            "smtp": self.smtp(),
            "allow_insecure_cert": self.allow_insecure_cert,
        });
        let raw = api.post("/v1/connection-tests", &body).await?;
        let result = serde_json::from_value(raw.clone())
            .map_err(|e| anyhow::anyhow!("unexpected connection test answer: {e}"))?;
        Ok((raw, result))
    }
}

fn report_failure(e: &TestFailure) {
    eprintln!(
        "error: {}: {}: {}",
        e.code,
        e.server.to_uppercase(),
        e.message
    );
}

async fn test(api: &Api, json: bool, s: ServerArgs) -> anyhow::Result<()> {
    let password = s.password()?;
    let (raw, result) = s.test(api, &password).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    }
    match result {
        ConnectionTestResult::Passed { folders, .. } => {
            if !json {
                println!("Connection test passed: IMAP login and SMTP authentication work.");
                print!("{}", show::tested_folders(&folders));
            }
            Ok(())
        }
        ConnectionTestResult::Failed { error, .. } => {
            report_failure(&error);
            Err(Reported(1).into())
        }
    }
}

async fn add(api: &Api, json: bool, a: AddArgs) -> anyhow::Result<()> {
    let s = &a.server;
    let password = s.password()?;
    let folders = if a.folders.is_empty() {
        match s.test(api, &password).await?.1 {
            ConnectionTestResult::Passed { folders, .. } => {
                eprintln!("Connection test passed.");
                ask::choose_folders(&folders)?
            }
            ConnectionTestResult::Failed { error, .. } => {
                report_failure(&error);
                return Err(Reported(1).into());
            }
        }
    } else {
        a.folders.clone()
    };
    // The owner of a personal account is the acting user; the API fills it in.
    let body = json!({
        "provider": "imap",
        "kind": if a.shared { "shared" } else { "personal" },
        "email": s.email,
        "username": s.username,
        "password": password,
        "imap": s.imap(),
        "smtp": s.smtp(),
        "allow_insecure_cert": s.allow_insecure_cert,
        "sync_from": a.sync_from,
        "create_contacts": a.create_contacts,
        "active_folders": folders,
    });
    let raw = api.post("/v1/accounts", &body).await?;
    print(json, &raw, |v: AccountView| {
        format!(
            "Connected {} as account {} ({}, syncing {}); its first sync is queued.\n",
            v.email,
            v.id,
            v.kind,
            folders.join(", ")
        )
    })
}

async fn folders(api: &Api, json: bool, f: FoldersArgs) -> anyhow::Result<()> {
    let path = format!("/v1/accounts/{}", f.id);
    let raw = api.get(&path).await?;
    if f.activate.is_empty() && f.deactivate.is_empty() {
        return print(json, &raw, |a: AccountView| show::account(&a));
    }
    if let Some(both) = f.activate.iter().find(|n| f.deactivate.contains(n)) {
        return Err(Usage(format!("{both:?} is both activated and deactivated")).into());
    }
    let current: AccountView = serde_json::from_value(raw)?;
    for name in &f.deactivate {
        if !current.folders.iter().any(|x| &x.name == name) {
            return Err(Usage(format!("account {} has no folder {name:?}", f.id)).into());
        }
    }
    // The API takes the full list: the active folders, less those deactivated, plus the new.
    let mut active: Vec<String> = current
        .folders
        .iter()
        .filter(|x| x.active && !f.deactivate.contains(&x.name))
        .map(|x| x.name.clone())
        .collect();
    for name in &f.activate {
        if !active.contains(name) {
            active.push(name.clone());
        }
    }
    let dropped: Vec<&str> = current
        .folders
        .iter()
        .filter(|x| x.active && f.deactivate.contains(&x.name))
        .map(|x| x.name.as_str())
        .collect();
    if !dropped.is_empty()
        && !f.yes
        && !ask::confirm(&format!(
            "Stop syncing {}? Their stored messages are deleted (the mail on the server stays).",
            dropped.join(", ")
        ))?
    {
        eprintln!("Nothing changed.");
        return Err(Reported(1).into());
    }
    let raw = api
        .put(&format!("{path}/folders"), &json!({ "active": active }))
        .await?;
    print(json, &raw, |a: AccountView| {
        format!(
            "Active folders changed; a sync is queued.\n{}",
            show::account(&a)
        )
    })
}

async fn delete(api: &Api, json: bool, id: i64, yes: bool) -> anyhow::Result<()> {
    let path = format!("/v1/accounts/{id}");
    if !yes {
        let a: AccountView = serde_json::from_value(api.get(&path).await?)?;
        let question = format!(
            "Delete account {id} <{}> and its {} stored messages? The mail on the server stays.",
            a.email, a.message_count
        );
        if !ask::confirm(&question)? {
            eprintln!("Not deleted.");
            return Err(Reported(1).into());
        }
    }
    let raw = api.delete(&path).await?;
    print(json, &raw, |d: Value| {
        format!(
            "Deleted account {id} and {} stored messages.\n",
            d["deleted_messages"].as_i64().unwrap_or(0)
        )
    })
}
