//! Publishing: outgoing events on subject = type, through JetStream when consuming from it,
//! shortened to the server's `max_payload` rather than dropped.

use crate::bus::{Confirmation, Publish, confirmed};
use anyhow::Context;
use async_nats::jetstream;
use cloudevents::AttributesReader;
use cloudevents::Event;
use futures::future::BoxFuture;
use serde_json::Value;
use tracing::warn;

/// The header that marks an event this service handles in the process that sent it; its value
/// is the queue group (`PUBSUB_GROUP`), so only this service's own subscribers pass it over.
pub const HANDLED_BY: &str = "Unleash-Remediation-Handled-By";

/// Publishes outgoing events: subject = type, structured JSON; through JetStream (waiting for
/// the stream's ack) when consuming from JetStream.
pub struct NatsPublisher {
    client: async_nats::Client,
    js: Option<jetstream::Context>,
    /// `PUBSUB_GROUP`, the value of [`HANDLED_BY`].
    group: String,
}

impl NatsPublisher {
    pub fn new(client: async_nats::Client, js: Option<jetstream::Context>, group: &str) -> Self {
        NatsPublisher {
            client,
            js,
            group: group.to_owned(),
        }
    }
}

impl NatsPublisher {
    /// Sends one event (`handled_here`: marked with [`HANDLED_BY`]); for JetStream, returns the
    /// stream's confirmation still to be awaited.
    async fn send(
        &self,
        event: &Event,
        handled_here: bool,
    ) -> anyhow::Result<Option<(String, jetstream::context::PublishAckFuture)>> {
        let subject = event.ty().to_owned();
        let max = self.client.server_info().max_payload;
        let payload = bytes::Bytes::from(encode_within(event, max)?);
        let mut headers = async_nats::HeaderMap::new();
        if handled_here {
            headers.insert(HANDLED_BY, self.group.as_str());
        }
        let Some(js) = &self.js else {
            let sent = if handled_here {
                self.client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
            } else {
                self.client.publish(subject.clone(), payload).await
            };
            sent.with_context(|| format!("publishing {subject}"))?;
            return Ok(None);
        };
        // Through JetStream every event carries its id as `Nats-Msg-Id`: an event sent again
        // under the same id (its remediation resumed after a crash, or a publish retried) is
        // stored once within the stream's duplicate window.
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id());
        let ack = js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .with_context(|| format!("publishing {subject}"))?;
        Ok(Some((subject, ack)))
    }

    /// Sends `events` in order, the last one marked when `last_handled_here`; returns the
    /// stream's confirmations, awaited together.
    async fn send_all(
        &self,
        events: Vec<Event>,
        last_handled_here: bool,
    ) -> anyhow::Result<Confirmation> {
        let mut acks = Vec::with_capacity(events.len());
        let last = events.len().saturating_sub(1);
        for (i, event) in events.iter().enumerate() {
            match self.send(event, last_handled_here && i == last).await? {
                Some(pending) => acks.push(pending),
                None => sent(event.ty()),
            }
        }
        if acks.is_empty() {
            return Ok(confirmed());
        }
        Ok(Box::pin(async move {
            for (subject, ack) in acks {
                ack.await
                    .with_context(|| format!("JetStream did not store {subject}"))?;
                sent(&subject);
            }
            Ok(())
        }))
    }
}

/// Whether a received message carries this service's [`HANDLED_BY`] mark for `group`: the
/// process that sent it handles it itself.
pub fn handled_by(headers: Option<&async_nats::HeaderMap>, group: &str) -> bool {
    headers
        .and_then(|h| h.get(HANDLED_BY))
        .is_some_and(|v| v.as_str() == group)
}

/// Counts an event sent (with JetStream: stored). A remediation.triggered stored is also a
/// step of a remediation a durability test may stop the process at.
fn sent(subject: &str) {
    metrics::counter!("events_sent_total", "type" => crate::telemetry::type_label(subject))
        .increment(1);
    if subject == crate::keptn::types::REMEDIATION_TRIGGERED {
        crate::failpoint::point("after-triggered");
    }
}

impl Publish for NatsPublisher {
    fn publish(&self, event: Event) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some((subject, ack)) = self.send(&event, false).await? {
                ack.await
                    .with_context(|| format!("JetStream did not store {subject}"))?;
            }
            sent(event.ty());
            Ok(())
        })
    }

    fn publish_all(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move { self.send_all(events, false).await?.await })
    }

    fn publish_all_handled_here(&self, events: Vec<Event>) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move { self.send_all(events, true).await?.await })
    }

    fn send_all_handled_here(
        &self,
        events: Vec<Event>,
    ) -> BoxFuture<'_, anyhow::Result<Confirmation>> {
        Box::pin(self.send_all(events, true))
    }
}

/// Bytes kept free below `max_payload`: room for headers a future publish might add.
const PAYLOAD_MARGIN: usize = 256;

/// The event as JSON, no larger than the server's `max_payload` (`0`: unknown, no limit): an
/// event that does not fit is not dropped but has its data shortened, every member getting a
/// fair share of the room (small members such as status and result stay whole), and says so in
/// `data.truncated`.
pub fn encode_within(event: &Event, max_payload: usize) -> anyhow::Result<Vec<u8>> {
    let bytes = serde_json::to_vec(event)?;
    let limit = max_payload.saturating_sub(PAYLOAD_MARGIN);
    if max_payload == 0 || bytes.len() <= limit {
        return Ok(bytes);
    }
    let mut value = serde_json::to_value(event)?;
    let note = format!(
        "data shortened from {} bytes to fit the NATS server's max_payload of {max_payload} bytes",
        bytes.len()
    );
    let data_len = value.get("data").map(json_len).unwrap_or(0);
    let envelope = bytes.len() - data_len + note.len() + 32;
    if let Some(data) = value.get_mut("data") {
        shrink(data, limit.saturating_sub(envelope));
        if let Value::Object(map) = data {
            map.insert("truncated".into(), Value::String(note));
        }
    }
    let out = serde_json::to_vec(&value)?;
    anyhow::ensure!(
        out.len() <= max_payload,
        "{} does not fit in the NATS server's max_payload of {max_payload} bytes even when shortened",
        event.ty()
    );
    warn!(
        event_type = %crate::keptn::types::short(event.ty()),
        size = bytes.len(),
        sent = out.len(),
        max_payload,
        "outgoing event larger than NATS allows; its data was shortened"
    );
    metrics::counter!("events_shortened_total").increment(1);
    Ok(out)
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// Members smaller than this after sharing are left out rather than cut.
const MIN_SHARE: usize = 24;

/// Shortens `v` to about `budget` bytes of JSON: long strings keep their beginning, objects and
/// arrays share the budget out among their members max-min fairly and leave out what gets too
/// small a share (saying how many).
fn shrink(v: &mut Value, budget: usize) {
    if json_len(v) <= budget {
        return;
    }
    match v {
        Value::String(s) => {
            let total = s.len();
            let mut keep = budget.min(total);
            loop {
                while !s.is_char_boundary(keep) {
                    keep -= 1;
                }
                let cut = format!("{}… [{} of {total} bytes cut]", &s[..keep], total - keep);
                if keep == 0 || json_len(&Value::String(cut.clone())) <= budget {
                    *s = cut;
                    return;
                }
                keep = keep * 3 / 4;
            }
        }
        Value::Object(map) => {
            let sizes: Vec<usize> = map.iter().map(|(k, v)| k.len() + 4 + json_len(v)).collect();
            let shares = fair_shares(&sizes, budget.saturating_sub(48));
            let old = std::mem::take(map);
            let mut left_out = 0;
            for (((k, mut v), share), size) in old.into_iter().zip(shares).zip(sizes) {
                if share < size && share < MIN_SHARE + k.len() {
                    left_out += 1;
                    continue;
                }
                shrink(&mut v, share.saturating_sub(k.len() + 4));
                map.insert(k, v);
            }
            if left_out > 0 {
                map.insert(
                    "…".into(),
                    Value::String(format!("{left_out} more members left out")),
                );
            }
        }
        Value::Array(items) => {
            let sizes: Vec<usize> = items.iter().map(|v| json_len(v) + 1).collect();
            let shares = fair_shares(&sizes, budget.saturating_sub(40));
            let old = std::mem::take(items);
            let mut left_out = 0;
            for ((mut v, share), size) in old.into_iter().zip(shares).zip(sizes) {
                if share < size && share < MIN_SHARE {
                    left_out += 1;
                    continue;
                }
                shrink(&mut v, share.saturating_sub(1));
                items.push(v);
            }
            if left_out > 0 {
                items.push(Value::String(format!("… {left_out} more left out")));
            }
        }
        _ => {}
    }
}

/// Max-min fair division of `budget` among items of `sizes`: each gets its size if that is no
/// more than an equal part of what the smaller ones left, else that equal part.
fn fair_shares(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut shares = vec![0; sizes.len()];
    let mut remaining = budget;
    for (n, &i) in order.iter().enumerate() {
        let fair = remaining / (sizes.len() - n);
        shares[i] = sizes[i].min(fair);
        remaining -= shares[i];
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keptn::Scope;
    use crate::keptn::outgoing::{EventFactory, Link, Outcome};

    #[test]
    fn large_events_are_shortened_to_fit_and_keep_what_matters() {
        let f = EventFactory::new("unleash-remediation-service");
        let scope = Scope {
            project: "website".into(),
            stage: "production".into(),
            service: "front-end".into(),
        };
        let labels = (0..2000)
            .map(|i| (format!("label-{i}"), "x".repeat(100)))
            .collect();
        let message = (0..20_000)
            .map(|i| format!("Flag-{i}: on (confirmed)"))
            .collect::<Vec<_>>()
            .join("; ");
        let link = Link {
            keptn_context: "ctx".into(),
            ..Default::default()
        };
        let event = f.action_finished(&link, &scope, &labels, Outcome::Errored, &message);
        let full = serde_json::to_vec(&event).unwrap().len();
        assert!(full > 600_000);
        for max in [full + PAYLOAD_MARGIN, 65_536, 8192, 2048] {
            let out = encode_within(&event, max).unwrap();
            assert!(out.len() <= max, "{} > {max}", out.len());
            let v: Value = serde_json::from_slice(&out).unwrap();
            let d = &v["data"];
            assert_eq!(d["status"], "errored");
            assert_eq!(d["result"], "fail");
            assert_eq!(d["project"], "website");
            assert!(
                d["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Flag-0: on")),
                "{max}: {d}"
            );
            if max > full {
                assert_eq!(out.len(), full);
                continue;
            }
            assert!(d["truncated"].as_str().unwrap().contains("max_payload"));
            assert_eq!(v["type"], "sh.keptn.event.action.finished");
        }
        // What fits is sent unchanged.
        let small = f.action_finished(&link, &scope, &Default::default(), Outcome::Pass, "ok");
        assert_eq!(
            encode_within(&small, 1024 * 1024).unwrap(),
            serde_json::to_vec(&small).unwrap()
        );
    }

    /// A remediation resumed after a crash sends its events again under the ids fixed before
    /// the crash; the stream keeps one copy of each, and still every event of another id.
    #[tokio::test]
    async fn jetstream_keeps_one_copy_of_an_event_sent_again_under_its_id() {
        use cloudevents::AttributesWriter;
        let nats =
            testkit::nats::NatsServer::start().expect("nats-server (scripts/test installs it)");
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client.clone());
        let mut stream = js
            .create_stream(jetstream::stream::Config {
                name: "dedup".into(),
                subjects: vec!["sh.keptn.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let publisher = NatsPublisher::new(client, Some(js), "group");
        let f = EventFactory::new("unleash-remediation-service");
        let scope = Scope {
            project: "website".into(),
            stage: "production".into(),
            service: "front-end".into(),
        };
        let link = Link {
            keptn_context: "ctx".into(),
            ..Default::default()
        };
        let finished = f.action_finished(&link, &scope, &Default::default(), Outcome::Pass, "ok");
        let mut other = finished.clone();
        other.set_id("another-id");
        publisher.publish(finished.clone()).await.unwrap();
        publisher
            .publish_all_handled_here(vec![finished.clone(), other.clone()])
            .await
            .unwrap();
        publisher.publish_all(vec![other, finished]).await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 2);
    }

    #[test]
    fn fair_shares_favour_the_small() {
        assert_eq!(fair_shares(&[10, 1000, 20], 100), vec![10, 70, 20]);
        assert_eq!(fair_shares(&[10, 20], 100), vec![10, 20]);
    }
}
