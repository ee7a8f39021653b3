use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::runtime::ingest::IngestObserver;
use crate::runtime::shutdown_pair;
use crate::telemetry::metrics::tests::{TestClock, ble_reading, telemetry_with_devices};

struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head");
    Answer {
        status: head[9..12].parse().expect("status"),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn serve(
    telemetry: Arc<Telemetry>,
    token_file: Option<std::path::PathBuf>,
) -> (
    SocketAddr,
    crate::runtime::ShutdownTrigger,
    tokio::task::JoinHandle<()>,
) {
    let config = StatusConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token_file,
        ..StatusConfig::default()
    };
    let server = StatusServer::bind(&config, telemetry).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let (trigger, shutdown) = shutdown_pair();
    let handle = tokio::spawn(server.run(shutdown.wait()));
    (addr, trigger, handle)
}

#[tokio::test]
async fn routes_answer_and_healthz_follows_liveness() {
    let telemetry = Arc::new(telemetry_with_devices(
        TestClock::at(1_800_000_000),
        false,
        "sources.ble.devices[0]",
    ));
    let (addr, trigger, handle) = serve(telemetry.clone(), None).await;

    let down = get(addr, "/healthz", None).await;
    assert_eq!(down.status, 503);
    assert!(
        down.body.contains("the pipeline has not started"),
        "{}",
        down.body
    );
    telemetry.tasks_started(["ble".to_owned(), "uploader".to_owned()]);
    let up = get(addr, "/healthz", None).await;
    assert_eq!((up.status, up.body.as_str()), (200, "ok\n"));
    telemetry.task_ended("uploader");
    let dead = get(addr, "/healthz", None).await;
    assert_eq!(dead.status, 503);
    assert!(
        dead.body.contains("task `uploader` is not running"),
        "{}",
        dead.body
    );

    telemetry.stored(&[ble_reading("C0:FF:EE:0D:00:01")]);
    let metrics = get(addr, "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        metrics.head
    );
    assert!(
        metrics
            .body
            .contains("vectorcare_task_up{task=\"uploader\"} 0"),
        "{}",
        metrics.body
    );

    let status = get(addr, "/status", None).await;
    assert_eq!(status.status, 200);
    assert!(status.head.contains("content-type: application/json"));
    let snapshot: Snapshot = serde_json::from_str(&status.body).expect("status JSON");
    assert_eq!(snapshot.devices[0].readings, 1);
    assert!(!snapshot.healthy);

    let page = get(addr, "/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.head.contains("text/html"));
    assert!(
        page.head
            .contains("content-security-policy: default-src 'none'")
    );
    assert!(
        !page.body.contains(PAGE_DATA_MARK),
        "the snapshot is embedded"
    );
    assert!(page.body.contains("\"gateway_id\":\"hub-0001\""));
    for external in ["http://", "https://", "src=\"", "href=\""] {
        let hits: Vec<_> = page
            .body
            .match_indices(external)
            .filter(|(i, _)| !page.body[*i..].starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(
            hits.is_empty(),
            "the page loads nothing from elsewhere: {external}"
        );
    }

    assert_eq!(get(addr, "/nope", None).await.status, 404);
    trigger.trigger();
    handle.await.expect("server stops on shutdown");
}

#[tokio::test]
async fn a_configured_token_is_required_bearer_or_basic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let telemetry = Arc::new(telemetry_with_devices(TestClock::at(0), false, "x"));
    telemetry.tasks_started(["ble".to_owned()]);
    let (addr, trigger, handle) = serve(telemetry, Some(token_file)).await;

    let refused = get(addr, "/healthz", None).await;
    assert_eq!(refused.status, 401);
    assert!(refused.head.contains("www-authenticate: basic"));
    assert_eq!(get(addr, "/status", Some("Bearer wrong")).await.status, 401);
    assert_eq!(
        get(addr, "/status", Some("Bearer s3cret-token"))
            .await
            .status,
        200
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret-token");
    assert_eq!(
        get(addr, "/", Some(&format!("Basic {basic}"))).await.status,
        200
    );
    let wrong = base64::engine::general_purpose::STANDARD.encode("s3cret-token:");
    assert_eq!(
        get(addr, "/", Some(&format!("Basic {wrong}"))).await.status,
        401
    );
    trigger.trigger();
    handle.await.expect("server stops");
}

#[test]
fn the_embedded_snapshot_cannot_close_the_script() {
    let telemetry = telemetry_with_devices(
        TestClock::at(0),
        false,
        "</script><script>alert(1)</script>",
    );
    let html = page(&telemetry.snapshot());
    assert_eq!(html.matches("</script>").count(), 1, "only the page's own");
    assert!(html.contains("<\\/script><script>alert(1)<\\/script>"));
}

#[tokio::test]
async fn an_empty_or_missing_token_file_fails_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "  \n").expect("write");
    let telemetry = Arc::new(telemetry_with_devices(TestClock::at(0), false, "x"));
    for (file, expected) in [
        (empty, "empty"),
        (dir.path().join("missing"), "cannot read"),
    ] {
        let config = StatusConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token_file: Some(file),
            ..StatusConfig::default()
        };
        let err = StatusServer::bind(&config, telemetry.clone())
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains(expected), "{err}");
    }
}
