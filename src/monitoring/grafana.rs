//! Grafana unified alerting's webhook contact point (`"version": "1"`): the Alertmanager shape
//! plus `orgId`, `state`, `title`, `message` and, per alert, `values`, `dashboardURL`,
//! `panelURL` and `silenceURL`. Mapped exactly as Alertmanager's; the Grafana extras are kept
//! in the problem details, with the dashboard UID and panel id when they can be told.

use super::alertmanager::translate_group;
use super::*;

/// Default header of Grafana's HMAC signature.
pub const SIGNATURE_HEADER: &str = "x-grafana-alerting-signature";
/// Timestamp header; when present the signed text is `<timestamp>:<body>`.
pub const TIMESTAMP_HEADER: &str = "x-grafana-alerting-timestamp";

/// Translates a Grafana notification. `Err` means the body as a whole is unusable.
pub fn translate(
    body: &[u8],
    query: &Scope,
    max_alerts: usize,
) -> Result<Vec<AlertOutcome>, DecodeError> {
    let obj = json_object(Source::Grafana, body)?;
    let org_id = obj.get("orgId").cloned().unwrap_or(Value::Null);
    translate_group(
        Source::Grafana,
        &obj,
        query,
        max_alerts,
        |alert, details| {
            let s = |name: &str| alert.get(name).and_then(Value::as_str).unwrap_or("");
            let org = alert
                .get("orgId")
                .cloned()
                .unwrap_or_else(|| org_id.clone());
            details.insert("orgId".into(), org);
            for name in ["dashboardURL", "panelURL", "silenceURL"] {
                details.insert(name.into(), s(name).into());
            }
            details.insert(
                "values".into(),
                alert.get("values").cloned().unwrap_or(Value::Null),
            );
            let annotation = |name: &str| {
                alert
                    .get("annotations")
                    .and_then(|a| a.get(name))
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
            };
            let uid = annotation("__dashboardUid__")
                .map(str::to_owned)
                .or_else(|| dashboard_uid(s("dashboardURL")));
            if let Some(uid) = uid {
                details.insert("dashboardUID".into(), uid.into());
            }
            let panel = annotation("__panelId__")
                .and_then(|p| p.parse::<u64>().ok())
                .or_else(|| panel_id(s("panelURL")));
            if let Some(panel) = panel {
                details.insert("panelId".into(), panel.into());
            }
        },
    )
}

/// `abc` from `https://grafana/d/abc/my-dashboard?...`.
fn dashboard_uid(url: &str) -> Option<String> {
    let after = url.split_once("/d/")?.1;
    let uid = after.split(['/', '?', '#']).next()?;
    (!uid.is_empty()).then(|| uid.to_owned())
}

/// `4` from `...?viewPanel=4` (newer Grafana writes `viewPanel=panel-4`).
fn panel_id(url: &str) -> Option<u64> {
    let query = url.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "viewPanel")
        .and_then(|(_, v)| v.trim_start_matches("panel-").parse().ok())
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Checks Grafana's signature: hex HMAC-SHA256 of the body, or of `<timestamp>:<body>` when
/// Grafana sends a timestamp. The comparison takes the same time wherever it differs.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
) -> Result<(), &'static str> {
    let Some(signature) = signature.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err("the X-Grafana-Alerting-Signature header is missing");
    };
    let mac = match timestamp.filter(|t| !t.is_empty()) {
        Some(ts) => hmac_sha256(secret, &[ts.as_bytes(), b":", body]),
        None => hmac_sha256(secret, &[body]),
    };
    let want: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    let given = signature.to_ascii_lowercase();
    let same = want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("the X-Grafana-Alerting-Signature does not match the body")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn long_keys_are_hashed_first() {
        // RFC 4231 test case 6: a 131-byte key.
        let key = [0xaau8; 131];
        let mac = hmac_sha256(
            &key,
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dashboard_and_panel_from_urls() {
        assert_eq!(
            dashboard_uid("https://g/d/abc123/my-dash?orgId=1").as_deref(),
            Some("abc123")
        );
        assert_eq!(panel_id("https://g/d/abc/x?orgId=1&viewPanel=4"), Some(4));
        assert_eq!(panel_id("https://g/d/abc/x?viewPanel=panel-7"), Some(7));
        assert_eq!(dashboard_uid(""), None);
    }
}
