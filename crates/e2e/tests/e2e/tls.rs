//! TLS is verified unless the account allows a non-secure certificate.

use mailfleet_core::{Encryption, Secret};
use mailfleet_imap::{ImapSettings, TlsTrust, connect};
use mailfleet_provider::{MailSession, ProviderError};
use mailfleet_testkit::{TestMailbox, ca_file, init};
use std::time::Duration;

fn settings(
    mailbox: &TestMailbox,
    encryption: Encryption,
    port: u16,
    insecure: bool,
) -> ImapSettings {
    ImapSettings {
        allow_insecure_cert: insecure,
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        ..ImapSettings::new(
            "127.0.0.1",
            port,
            encryption,
            mailbox.address.clone(),
            Secret::new(mailbox.password.clone()),
        )
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_unless_the_account_allows_it() {
    init();
    let mailbox = TestMailbox::create();
    // Web PKI roots only: the local test CA is unknown, as a self-signed server's would be.
    let public_only = TlsTrust::new(None).unwrap();
    for (enc, port) in [(Encryption::Ssl, 993), (Encryption::Starttls, 143)] {
        match connect(&settings(&mailbox, enc, port, false), &public_only).await {
            Err(ProviderError::Tls(msg)) => assert!(msg.contains("non-secure"), "{msg}"),
            Err(e) => panic!("{enc}: expected a TLS error, got {e}"),
            Ok(_) => panic!("{enc}: an untrusted certificate was accepted"),
        }
        let mut s = connect(&settings(&mailbox, enc, port, true), &public_only)
            .await
            .expect("allowed non-secure certificate");
        assert!(!s.list_folders().await.unwrap().is_empty());
        Box::new(s).close().await;
    }
}

#[tokio::test]
async fn a_trusted_ca_verifies_the_server_and_plain_imap_still_works() {
    init();
    let mailbox = TestMailbox::create();
    let ca = std::fs::read(ca_file()).unwrap();
    let trust = TlsTrust::new(Some(("test CA", &ca))).unwrap();
    for (enc, port) in [
        (Encryption::Ssl, 993),
        (Encryption::Starttls, 143),
        (Encryption::None, 143),
    ] {
        let mut s = connect(&settings(&mailbox, enc, port, false), &trust)
            .await
            .unwrap_or_else(|e| panic!("{enc}: {e}"));
        let names: Vec<String> = s
            .list_folders()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        for f in ["INBOX", "Sent", "Trash", "Junk", "Archive"] {
            assert!(names.contains(&f.to_string()), "{enc}: {names:?}");
        }
        Box::new(s).close().await;
    }
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_failure_and_fast() {
    init();
    let mailbox = TestMailbox::create();
    let ca = std::fs::read(ca_file()).unwrap();
    let trust = TlsTrust::new(Some(("test CA", &ca))).unwrap();
    let mut s = settings(&mailbox, Encryption::Ssl, 993, false);
    s.password = Secret::new("wrong".into());
    match connect(&s, &trust).await {
        Err(ProviderError::AuthFailed(msg)) => assert!(!msg.contains("wrong")),
        Err(e) => panic!("expected auth failure, got {e}"),
        Ok(_) => panic!("logged in with a wrong password"),
    }
}

#[tokio::test]
async fn starttls_refused_by_the_server_is_an_error_never_a_plaintext_login() {
    init();
    let mut replies = std::collections::HashMap::new();
    replies.insert(
        "CAPABILITY".to_string(),
        (
            vec!["* CAPABILITY IMAP4rev1 AUTH=PLAIN".to_string()],
            "OK done".to_string(),
        ),
    );
    replies.insert(
        "STARTTLS".to_string(),
        (vec![], "BAD STARTTLS not supported".to_string()),
    );
    replies.insert("LOGIN".to_string(), (vec![], "OK logged in".to_string()));
    let server = mailfleet_testkit::ScriptedImap::start("* OK IMAP4rev1 ready", replies).await;
    let settings = ImapSettings::new(
        "127.0.0.1",
        server.port,
        Encryption::Starttls,
        "ann@example.test",
        Secret::new("s3cret-pw".into()),
    );
    let trust = TlsTrust::new(None).unwrap();
    match connect(&settings, &trust).await {
        Err(ProviderError::Tls(msg)) => assert!(msg.contains("STARTTLS"), "{msg}"),
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("logged in without TLS"),
    }
    let received = server.received();
    assert!(
        received.iter().any(|l| l.contains("STARTTLS")),
        "{received:?}"
    );
    assert!(
        !received
            .iter()
            .any(|l| l.contains("LOGIN") || l.contains("s3cret-pw")),
        "credentials were sent in the clear: {received:?}"
    );
}
