use crate::errors;
use crate::session::ImapSession;
use crate::stream::{ImapStream, Io};
use crate::tls::TlsTrust;
use mailfleet_core::{Encryption, Secret};
use mailfleet_provider::ProviderError;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// What is needed to log in to one IMAP account.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    /// The login name: the account's user name when it has one, else its address.
    pub login: String,
    pub password: Secret<String>,
    pub allow_insecure_cert: bool,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Use CONDSTORE / QRESYNC when the server offers them (tests turn them off to prove the
    /// fallback).
    pub use_condstore: bool,
    pub use_qresync: bool,
    /// Use MOVE / UIDPLUS when the server offers them (tests turn them off to prove the
    /// COPY + `\Deleted` + expunge fallback).
    pub use_move: bool,
    pub use_uidplus: bool,
}

impl ImapSettings {
    /// Settings with the default timeouts and every extension the server offers.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        encryption: Encryption,
        login: impl Into<String>,
        password: Secret<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            encryption,
            login: login.into(),
            password,
            allow_insecure_cert: false,
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(300),
            use_condstore: true,
            use_qresync: true,
            use_move: true,
            use_uidplus: true,
        }
    }
}

type Client = async_imap::Client<ImapStream>;

/// Connects, secures the connection as configured and logs in.
#[tracing::instrument(name = "imap.connect", skip_all, fields(host = %settings.host, port = settings.port))]
pub async fn connect(
    settings: &ImapSettings,
    trust: &TlsTrust,
) -> Result<ImapSession, ProviderError> {
    let s = settings;
    let tcp = timeout(
        s.connect_timeout,
        TcpStream::connect((s.host.as_str(), s.port)),
    )
    .await
    .map_err(|_| errors::timeout(&format!("connecting to {}:{}", s.host, s.port)))?
    .map_err(|e| errors::connect_io(&s.host, s.port, e))?;
    let _ = tcp.set_nodelay(true);
    let received = Arc::new(AtomicU64::new(0));
    let stream = |io| ImapStream::new(io, received.clone());

    let client = match s.encryption {
        Encryption::Ssl => {
            let tls = handshake(s, trust, tcp).await?;
            greeted(Client::new(stream(Io::Tls(Box::new(tls)))), s).await?
        }
        Encryption::None => greeted(Client::new(stream(Io::Plain(tcp))), s).await?,
        Encryption::Starttls => {
            let mut plain = greeted(Client::new(stream(Io::Plain(tcp))), s).await?;
            // Refuse, never downgrade, when the server does not offer STARTTLS: the
            // response to STARTTLS is NO/BAD then.
            timeout(
                s.command_timeout,
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|_| errors::timeout("STARTTLS"))?
            .map_err(|e| ProviderError::Tls(format!("the server did not accept STARTTLS: {e}")))?;
            let tcp = match plain.into_inner().io {
                Io::Plain(tcp) => tcp,
                Io::Tls(_) => unreachable!("the stream is plain before STARTTLS"),
            };
            let tls = handshake(s, trust, tcp).await?;
            // No greeting after STARTTLS.
            Client::new(stream(Io::Tls(Box::new(tls))))
        }
    };

    let mut session = timeout(
        s.command_timeout,
        client.login(&s.login, s.password.expose()),
    )
    .await
    .map_err(|_| errors::timeout("LOGIN"))?
    .map_err(|(e, _)| errors::login(e))?;
    // Capabilities can change after login; ask again rather than trust the greeting.
    let caps = timeout(s.command_timeout, session.capabilities())
        .await
        .map_err(|_| errors::timeout("CAPABILITY"))?
        .map_err(errors::command)?;
    let condstore = s.use_condstore && (caps.has_str("CONDSTORE") || caps.has_str("QRESYNC"));
    let mut qresync = s.use_qresync && condstore && caps.has_str("QRESYNC");
    if qresync {
        // QRESYNC must be enabled before the EXAMINE that uses it.
        qresync = timeout(
            s.command_timeout,
            session.run_command_and_check_ok("ENABLE QRESYNC"),
        )
        .await
        .is_ok_and(|r| r.is_ok());
    }
    let objectid = caps.has_str("OBJECTID");
    let move_ = s.use_move && caps.has_str("MOVE");
    let uidplus = s.use_uidplus && caps.has_str("UIDPLUS");
    Ok(ImapSession::new(
        session,
        s.command_timeout,
        crate::session::Extensions {
            condstore,
            qresync,
            objectid,
            move_,
            uidplus,
        },
        received,
    ))
}

async fn handshake(
    s: &ImapSettings,
    trust: &TlsTrust,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProviderError> {
    let name = ServerName::try_from(s.host.clone()).map_err(|e| {
        ProviderError::Tls(format!("{:?} is not a valid TLS server name: {e}", s.host))
    })?;
    let connector = TlsConnector::from(trust.config(s.allow_insecure_cert));
    timeout(s.connect_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| errors::timeout("TLS handshake"))?
        .map_err(|e| errors::connect_io(&s.host, s.port, e))
}

/// async-imap does not read the greeting itself.
async fn greeted(mut client: Client, s: &ImapSettings) -> Result<Client, ProviderError> {
    match timeout(s.connect_timeout, client.read_response()).await {
        Err(_) => Err(errors::timeout("waiting for the IMAP greeting")),
        Ok(Err(e)) => Err(errors::connect_io(&s.host, s.port, e)),
        Ok(Ok(None)) => Err(ProviderError::Disconnected(
            "the server closed the connection before its greeting".into(),
        )),
        Ok(Ok(Some(_))) => Ok(client),
    }
}
