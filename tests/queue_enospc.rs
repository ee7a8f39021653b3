//! ENOSPC: the queue lives on a small tmpfs this test mounts. When the file system fills,
//! appends fail with `QueueError::Full(Disk)` (shown in stats), nothing stored is lost or
//! corrupted, and appends succeed again by themselves once space is freed.
//!
//! Needs CAP_SYS_ADMIN (root) to mount a tmpfs. Without it the test fails and says so; set
//! `VECTORCARE_SKIP_MOUNT_TESTS=1` to skip it explicitly.

#[path = "support/tmpfs.rs"]
mod tmpfs;

use vectorcare_gateway::queue::{
    DurableQueue, FullReason, QueueConfig, QueueError, RecordId, SledQueue,
};

fn payload(i: u64) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","n":{i},"pad":"{}"}}"#,
        "x".repeat(500)
    )
    .into_bytes()
}

#[test]
fn disk_full_is_surfaced_and_recovers_after_space_is_freed() {
    let Some(mnt) = tmpfs::TmpfsMount::new("8m") else {
        return;
    };
    let data = mnt.path().join("data");
    let filler = mnt.path().join("filler");

    let q = SledQueue::open(&data, &QueueConfig::default()).expect("open");
    let mut stored = Vec::new();
    for i in 0..20 {
        stored.extend(
            q.append_blocking(vec![payload(i)])
                .expect("append before full"),
        );
    }
    // Take every free byte.
    let _ = std::fs::write(&filler, vec![0u8; 16 << 20]);

    let mut refused = None;
    for i in 20..20_000 {
        match q.append_blocking(vec![payload(i)]) {
            Ok(ids) => stored.extend(ids),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the full file system must refuse an append");
    assert!(
        matches!(refused, QueueError::Full(FullReason::Disk(_))),
        "expected Full(Disk), got {refused:?}"
    );
    assert!(
        q.stats().expect("stats").full.is_some(),
        "status must show it"
    );
    assert!(q.append_blocking(vec![payload(0)]).is_err(), "still full");

    std::fs::remove_file(&filler).expect("free space");
    let after = q
        .append_blocking(vec![payload(99_999)])
        .expect("appends recover by themselves once space returns");
    stored.extend(after);
    assert_eq!(q.stats().expect("stats").full, None);
    drop(q);

    let q = SledQueue::open(&data, &QueueConfig::default()).expect("reopen");
    let present: Vec<RecordId> = q
        .list_waiting(RecordId(0), usize::MAX)
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    for id in &stored {
        assert!(present.contains(id), "resolved append {id} lost");
    }
    assert_eq!(q.stats().expect("stats").quarantined, 0);
    let first = q.peek(1).expect("peek");
    assert_eq!(first[0].payload, payload(0));
}
