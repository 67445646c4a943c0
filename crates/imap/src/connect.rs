use crate::errors;
use crate::session::ImapSession;
use crate::stream::ImapStream;
use crate::tls::TlsTrust;
use mailfleet_core::{Encryption, Secret};
use mailfleet_provider::ProviderError;
use rustls::pki_types::ServerName;
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
}

type Client = async_imap::Client<ImapStream>;

/// Connects, secures the connection as configured and logs in.
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

    let client = match s.encryption {
        Encryption::Ssl => {
            let tls = handshake(s, trust, tcp).await?;
            greeted(Client::new(ImapStream::Tls(Box::new(tls))), s).await?
        }
        Encryption::None => greeted(Client::new(ImapStream::Plain(tcp)), s).await?,
        Encryption::Starttls => {
            let mut plain = greeted(Client::new(ImapStream::Plain(tcp)), s).await?;
            // Refuse, never downgrade, when the server does not offer STARTTLS: the
            // response to STARTTLS is NO/BAD then.
            timeout(
                s.command_timeout,
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|_| errors::timeout("STARTTLS"))?
            .map_err(|e| ProviderError::Tls(format!("the server did not accept STARTTLS: {e}")))?;
            let tcp = match plain.into_inner() {
                ImapStream::Plain(tcp) => tcp,
                ImapStream::Tls(_) => unreachable!("the stream is plain before STARTTLS"),
            };
            let tls = handshake(s, trust, tcp).await?;
            // No greeting after STARTTLS.
            Client::new(ImapStream::Tls(Box::new(tls)))
        }
    };

    let session = timeout(
        s.command_timeout,
        client.login(&s.login, s.password.expose()),
    )
    .await
    .map_err(|_| errors::timeout("LOGIN"))?
    .map_err(|(e, _)| errors::login(e))?;
    Ok(ImapSession::new(session, s.command_timeout))
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
