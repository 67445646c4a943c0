//! RabbitMQ through lapin: the project's queues (declared idempotently at start), publishing
//! with publisher confirms and `mandatory`, and channels for consuming with manual acks.

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use mailfleet_core::{Job, JobEnvelope};
use std::sync::Arc;
use tokio::sync::RwLock;

pub use lapin::Consumer;
pub use lapin::message::Delivery;
pub use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions,
};
pub use lapin::types::AMQPValue;

/// RabbitMQ's direct reply-to pseudo-queue.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Requests nobody answers within this long are dropped by the broker.
pub const RPC_QUEUE_TTL_MS: i64 = 120_000;

/// How often a job may be delivered before the broker dead-letters it.
pub const DELIVERY_LIMIT: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker did not confirm the publish of job {0}")]
    NotConfirmed(String),
    #[error("job {0} could not be routed to a queue")]
    Unroutable(String),
    #[error("no answer to job {0} in time (is a worker running?)")]
    NoAnswer(String),
    #[error("the broker closed the consumer")]
    Closed,
}

/// The names of the project's queues under one prefix (tests use their own prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub prefix: String,
    pub sync: String,
    pub refresh: String,
    pub send: String,
    pub test_connection: String,
    pub dead: String,
    pub dead_letter_exchange: String,
}

impl QueueNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            sync: format!("{prefix}.sync"),
            refresh: format!("{prefix}.refresh_folders"),
            send: format!("{prefix}.send"),
            test_connection: format!("{prefix}.test_connection"),
            dead: format!("{prefix}.dead"),
            dead_letter_exchange: format!("{prefix}.dlx"),
        }
    }

    pub fn for_job(&self, job: &Job) -> &str {
        match job {
            Job::SyncAccount { .. } => &self.sync,
            Job::RefreshFolders { .. } => &self.refresh,
            Job::SendMessage { .. } => &self.send,
            Job::TestConnection { .. } => &self.test_connection,
        }
    }

    fn work_queues(&self) -> [&str; 3] {
        [&self.sync, &self.refresh, &self.send]
    }
}

/// One AMQP connection with its confirming publish channel.
struct Link {
    conn: Connection,
    publish: Channel,
}

/// A connection to RabbitMQ with a confirming publish channel, replaced by a fresh one (the
/// topology declared again) when it breaks: lapin's own recovery is not relied upon (lapin
/// issue #450).
pub struct Broker {
    url: String,
    names: QueueNames,
    link: RwLock<Arc<Link>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects and declares the topology (idempotent: declaring what exists is a no-op).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let names = QueueNames::new(prefix);
        let link = open_link(url, &names).await?;
        Ok(Self {
            url: url.to_string(),
            names,
            link: RwLock::new(Arc::new(link)),
        })
    }

    async fn current(&self) -> Arc<Link> {
        self.link.read().await.clone()
    }

    /// Replaces the connection if it is down (declaring the topology again). Several callers
    /// may notice one failure: only the first reconnects.
    pub async fn ensure_connected(&self) -> Result<(), QueueError> {
        let link = self.current().await;
        if link.conn.status().connected() {
            return Ok(());
        }
        self.replace(&link).await
    }

    async fn replace(&self, stale: &Arc<Link>) -> Result<(), QueueError> {
        let mut guard = self.link.write().await;
        if !Arc::ptr_eq(&guard, stale) {
            return Ok(());
        }
        let fresh = open_link(&self.url, &self.names).await?;
        tracing::info!("Reconnected to RabbitMQ.");
        *guard = Arc::new(fresh);
        Ok(())
    }

    pub fn names(&self) -> &QueueNames {
        &self.names
    }

    pub async fn is_connected(&self) -> bool {
        self.current().await.conn.status().connected()
    }

    /// Publishes a persistent job and waits for the broker's confirm. `mandatory` turns an
    /// unroutable publish into an error instead of a silent drop.
    pub async fn publish(&self, envelope: &JobEnvelope) -> Result<(), QueueError> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(envelope.job_id.to_string().into())
            .with_type(envelope.job.kind().into())
            .with_headers(trace_headers());
        let published = self
            .publish_confirmed(
                self.names.for_job(&envelope.job),
                &envelope.to_bytes(),
                props,
            )
            .await;
        if published.is_ok() {
            mailfleet_telemetry::metrics::metrics().job_published(envelope.job.kind());
        }
        published.map_err(|e| match e {
            QueueError::Unroutable(_) => QueueError::Unroutable(envelope.job_id.to_string()),
            QueueError::NotConfirmed(_) => QueueError::NotConfirmed(envelope.job_id.to_string()),
            other => other,
        })
    }

    /// Moves a job that can never succeed to the dead queue, with the reason in its
    /// `x-mailfleet-reason` header (and where it came from in `x-mailfleet-queue`), then acks
    /// it. Should the publish fail, the delivery is rejected and the broker dead-letters it
    /// without the reason.
    pub async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-mailfleet-reason".into(),
            AMQPValue::LongString(reason.into()),
        );
        headers.insert(
            "x-mailfleet-queue".into(),
            AMQPValue::LongString(delivery.routing_key.as_str().into()),
        );
        let props = delivery.properties.clone().with_headers(headers);
        let kind = delivery
            .properties
            .kind()
            .as_ref()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into());
        mailfleet_telemetry::metrics::metrics().job_dead_lettered(&kind);
        match self
            .publish_confirmed(&self.names.dead, &delivery.data, props)
            .await
        {
            Ok(()) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Dead-lettering with a reason failed; rejecting instead.");
                delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await?;
            }
        }
        Ok(())
    }

    /// Publishes raw bytes to one of the work queues, confirmed, as an outside publisher (the
    /// CRM) would. Used to prove that what the CRM sends is what the worker reads.
    pub async fn publish_raw(&self, queue: &str, body: &[u8]) -> Result<(), QueueError> {
        self.publish_confirmed(queue, body, BasicProperties::default())
            .await
    }

    /// Publishes with a confirm. A publish that fails because the connection broke is sent
    /// once more on a fresh connection: an unconfirmed message may arrive twice, never not at
    /// all, and every handler is idempotent.
    async fn publish_confirmed(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), QueueError> {
        let link = self.current().await;
        match publish_on(&link.publish, queue, body, props.clone()).await {
            Err(QueueError::Broker(e)) => {
                tracing::warn!(error = %e, "Publish failed; reconnecting to RabbitMQ.");
                self.replace(&link).await?;
                publish_on(&self.current().await.publish, queue, body, props).await
            }
            other => other,
        }
    }

    /// Publishes `envelope` as a request and waits up to `timeout` for the answer (RabbitMQ
    /// direct reply-to: the reply comes to this channel, no queue is declared for it).
    pub async fn call(
        &self,
        envelope: &JobEnvelope,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, QueueError> {
        use futures::StreamExt;
        self.ensure_connected().await?;
        let ch = self.current().await.conn.create_channel().await?;
        let mut replies = ch
            .basic_consume(
                ShortString::from(REPLY_TO),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let correlation = envelope.job_id.to_string();
        ch.basic_publish(
            ShortString::from(""),
            ShortString::from(self.names.for_job(&envelope.job)),
            BasicPublishOptions::default(),
            &envelope.to_bytes(),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_type(envelope.job.kind().into())
                .with_reply_to(REPLY_TO.into())
                .with_correlation_id(correlation.as_str().into())
                .with_headers(trace_headers())
                // A request nobody took in time is worthless: let the broker drop it.
                .with_expiration(timeout.as_millis().to_string().into()),
        )
        .await?;
        let answer = tokio::time::timeout(timeout, async {
            while let Some(d) = replies.next().await {
                let d = d?;
                if d.properties.correlation_id().as_ref().map(|c| c.as_str())
                    == Some(correlation.as_str())
                {
                    return Ok(Some(d.data));
                }
            }
            Ok::<_, QueueError>(None)
        })
        .await;
        let _ = ch.close(200, ShortString::from("done")).await;
        match answer {
            Ok(Ok(Some(body))) => Ok(body),
            Ok(Err(e)) => Err(e),
            _ => Err(QueueError::NoAnswer(correlation)),
        }
    }

    /// Answers a request received with `reply_to` and `correlation_id`.
    pub async fn reply(
        &self,
        reply_to: &str,
        correlation_id: &str,
        body: &[u8],
    ) -> Result<(), QueueError> {
        self.current()
            .await
            .publish
            .basic_publish(
                ShortString::from(""),
                ShortString::from(reply_to),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_correlation_id(correlation_id.into()),
            )
            .await?
            .await?;
        Ok(())
    }

    /// A channel for consuming with at most `prefetch` unacked deliveries.
    pub async fn consumer_channel(&self, prefetch: u16) -> Result<Channel, QueueError> {
        let ch = self.current().await.conn.create_channel().await?;
        ch.basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        Ok(ch)
    }

    /// One delivery from `queue`, if any (manual ack); lets tests drive a worker step by step.
    pub async fn get(channel: &Channel, queue: &str) -> Result<Option<Delivery>, QueueError> {
        Ok(channel
            .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false })
            .await?
            .map(|m| m.delivery))
    }

    /// Messages ready in `queue`.
    pub async fn ready_count(&self, queue: &str) -> Result<u32, QueueError> {
        let q = self
            .current()
            .await
            .publish
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    /// Deletes this prefix's queues and exchange (tests clean up with it).
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let link = self.current().await;
        for q in self.names.work_queues().into_iter().chain([
            self.names.dead.as_str(),
            self.names.test_connection.as_str(),
        ]) {
            link.publish
                .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                .await?;
        }
        link.publish
            .exchange_delete(
                ShortString::from(self.names.dead_letter_exchange.as_str()),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        let _ = self
            .current()
            .await
            .conn
            .close(200, ShortString::from("bye"))
            .await;
    }
}

async fn open_link(url: &str, names: &QueueNames) -> Result<Link, QueueError> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_topology(&publish, names).await?;
    Ok(Link { conn, publish })
}

async fn publish_on(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), QueueError> {
    let confirm = channel
        .basic_publish(
            ShortString::from(""),
            ShortString::from(queue),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props.with_delivery_mode(2),
        )
        .await?
        .await?;
    match confirm {
        lapin::Confirmation::Ack(None) => Ok(()),
        lapin::Confirmation::Ack(Some(_)) => Err(QueueError::Unroutable(queue.to_string())),
        _ => Err(QueueError::NotConfirmed(queue.to_string())),
    }
}

/// Quorum queues with an explicit delivery limit, dead-lettering into `<prefix>.dead`.
async fn declare_topology(ch: &Channel, names: &QueueNames) -> Result<(), QueueError> {
    ch.exchange_declare(
        ShortString::from(names.dead_letter_exchange.as_str()),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut dead_args = FieldTable::default();
    dead_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        ShortString::from(names.dead.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        dead_args,
    )
    .await?;
    ch.queue_bind(
        ShortString::from(names.dead.as_str()),
        ShortString::from(names.dead_letter_exchange.as_str()),
        ShortString::from(""),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    // Connection tests are requests someone is waiting for: a classic queue whose messages
    // expire, since a test answered after its caller gave up is worthless.
    let mut rpc_args = FieldTable::default();
    rpc_args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(RPC_QUEUE_TTL_MS),
    );
    ch.queue_declare(
        ShortString::from(names.test_connection.as_str()),
        QueueDeclareOptions::default(),
        rpc_args,
    )
    .await?;
    for q in names.work_queues() {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(names.dead_letter_exchange.as_str().into()),
        );
        ch.queue_declare(
            ShortString::from(q),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    }
    Ok(())
}

/// The publishing span's W3C trace context, as AMQP headers.
fn trace_headers() -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in mailfleet_telemetry::propagation::current_headers() {
        t.insert(k.into(), AMQPValue::LongString(v.into()));
    }
    t
}

/// The text headers of a delivery (where a job's trace context travels).
pub fn text_headers(delivery: &Delivery) -> Vec<(String, String)> {
    let Some(h) = delivery.properties.headers() else {
        return Vec::new();
    };
    h.inner()
        .iter()
        .filter_map(|(k, v)| {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                _ => return None,
            };
            Some((k.as_str().to_owned(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_route_to_their_queue_under_the_prefix() {
        let n = QueueNames::new("t1");
        assert_eq!(n.for_job(&Job::SyncAccount { account_id: 1 }), "t1.sync");
        assert_eq!(
            n.for_job(&Job::RefreshFolders { account_id: 1 }),
            "t1.refresh_folders"
        );
        assert_eq!(n.for_job(&Job::SendMessage { outgoing_id: 1 }), "t1.send");
        assert_eq!(
            n.for_job(&Job::TestConnection { test_id: 1 }),
            "t1.test_connection"
        );
    }
}
