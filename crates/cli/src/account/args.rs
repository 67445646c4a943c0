//! The command line of `mailfleet account …`.

use crate::config::ApiClientArgs;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use mailfleet_core::{Encryption, ServerEndpoint, SyncWindow};

#[derive(Args, Debug)]
pub struct AccountArgs {
    #[command(flatten)]
    pub(super) api: ApiClientArgs,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true, help_heading = "Client options")]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: AccountCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum AccountCommand {
    /// Connect an IMAP account (asks for the password without echo).
    Add(AddArgs),
    /// Test IMAP login and SMTP authentication (through a worker) and show the folders.
    Test(ServerArgs),
    /// Your accounts, primary first, and the shared inboxes you reach.
    List,
    /// Show an account's folders, or change which ones are synced.
    Folders(FoldersArgs),
    /// Test a disabled account's settings again, with a new password, and enable it.
    Reconnect {
        id: i64,
        /// Read the new password from the first line of stdin (empty: keep the stored one).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make one of your personal accounts your primary account.
    Primary { id: i64 },
    /// Delete an account and all the mail stored for it (not the mail on the server).
    Delete {
        id: i64,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
#[command(next_help_heading = "Mail server")]
pub(super) struct ServerArgs {
    /// The account's e-mail address.
    #[arg(long)]
    pub(super) email: String,
    /// Login name, for servers that want one other than the address (Exchange).
    #[arg(long)]
    pub(super) username: Option<String>,
    /// IMAP server: host name or address.
    #[arg(long)]
    pub(super) imap_host: String,
    /// [default: 993 with ssl, else 143]
    #[arg(long)]
    pub(super) imap_port: Option<u16>,
    #[arg(long, default_value = "ssl", value_parser = encryption())]
    pub(super) imap_encryption: Encryption,
    /// [default: the IMAP host]
    #[arg(long)]
    pub(super) smtp_host: Option<String>,
    /// [default: 465 with ssl, 587 with starttls, 25 with none]
    #[arg(long)]
    pub(super) smtp_port: Option<u16>,
    #[arg(long, default_value = "starttls", value_parser = encryption())]
    pub(super) smtp_encryption: Encryption,
    /// Accept a server certificate not signed by a trusted CA.
    #[arg(long)]
    pub(super) allow_insecure_cert: bool,
    /// Read the password from the first line of stdin instead of asking for it.
    #[arg(long)]
    pub(super) password_stdin: bool,
}

#[derive(Args, Debug)]
pub(super) struct AddArgs {
    #[command(flatten)]
    pub(super) server: ServerArgs,
    /// How far back the first sync reaches; fixed once the account is connected.
    #[arg(long, value_parser = sync_window(), help_heading = "Account")]
    pub(super) sync_from: SyncWindow,
    /// Make unknown senders contacts.
    #[arg(long, help_heading = "Account")]
    pub(super) create_contacts: bool,
    /// A shared inbox (administrators only) instead of your personal account.
    #[arg(long, help_heading = "Account")]
    pub(super) shared: bool,
    /// A folder to sync (repeatable). Without one, the connection is tested first and you
    /// pick from the mailbox's folders.
    #[arg(long = "folder", value_name = "NAME", help_heading = "Account")]
    pub(super) folders: Vec<String>,
}

#[derive(Args, Debug)]
pub(super) struct FoldersArgs {
    pub(super) id: i64,
    /// Sync these folders too.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub(super) activate: Vec<String>,
    /// Stop syncing these folders: their stored messages are deleted (not on the server).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub(super) deactivate: Vec<String>,
    /// Do not ask before deactivating folders.
    #[arg(long, short)]
    pub(super) yes: bool,
}

fn encryption() -> impl TypedValueParser<Value = Encryption> {
    PossibleValuesParser::new(Encryption::ALL.iter().map(|e| e.as_str()))
        .map(|s| s.parse().expect("a listed value"))
}

fn sync_window() -> impl TypedValueParser<Value = SyncWindow> {
    PossibleValuesParser::new(SyncWindow::ALL.iter().map(|w| w.as_str()))
        .map(|s| s.parse().expect("a listed value"))
}

impl ServerArgs {
    pub(super) fn imap(&self) -> ServerEndpoint {
        let port = self.imap_port.unwrap_or(match self.imap_encryption {
            Encryption::Ssl => 993,
            _ => 143,
        });
        ServerEndpoint {
            host: self.imap_host.clone(),
            port,
            encryption: self.imap_encryption,
        }
    }

    pub(super) fn smtp(&self) -> ServerEndpoint {
        let port = self.smtp_port.unwrap_or(match self.smtp_encryption {
            Encryption::Ssl => 465,
            Encryption::Starttls => 587,
            Encryption::None => 25,
        });
        ServerEndpoint {
            host: self
                .smtp_host
                .clone()
                .unwrap_or_else(|| self.imap_host.clone()),
            port,
            encryption: self.smtp_encryption,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn account_command_line_is_consistent() {
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn account_ports_follow_the_encryption_and_smtp_defaults_to_the_imap_host() {
        let cli = crate::Cli::try_parse_from([
            "mailfleet",
            "account",
            "add",
            "--email",
            "ann@example.test",
            "--imap-host",
            "mail.example.test",
            "--sync-from",
            "3_months",
        ])
        .unwrap();
        let crate::Command::Account(AccountArgs {
            command: AccountCommand::Add(add),
            ..
        }) = cli.command
        else {
            panic!("not account add");
        };
        let imap = add.server.imap();
        assert_eq!((imap.port, imap.encryption), (993, Encryption::Ssl));
        let smtp = add.server.smtp();
        assert_eq!(smtp.host, "mail.example.test");
        assert_eq!((smtp.port, smtp.encryption), (587, Encryption::Starttls));
        assert_eq!(add.sync_from, SyncWindow::ThreeMonths);
        assert!(add.folders.is_empty() && !add.server.password_stdin);
    }
}
