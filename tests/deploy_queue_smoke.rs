//! Storage smoke test that `scripts/cross-test` also runs on the target architecture under
//! qemu-user: the queue's storage engine (sled) appends, flushes, is closed and reopened, and
//! gives back every record in order. It catches target-specific breakage (atomics, page size,
//! fsync, endianness of keys) before a device does.
//! When `queue` grows its own append/reopen API this test should call it instead of sled.

const RECORDS: u64 = 500;

fn record(i: u64) -> Vec<u8> {
    format!(
        "{{\"seq\":{i},\"payload\":\"{}\"}}",
        "x".repeat((i % 97) as usize)
    )
    .into_bytes()
}

/// Reopens the database this test just closed. sled's own threads drop their handles on the
/// file asynchronously, so the lock can look held for a moment after the last `Db` is dropped
/// (this failed a CI run); the queue's store retries for the same reason (`SLED_LOCK_RETRY` in
/// src/queue/store.rs). Any other error, or a lock still held after 10 s, fails the test.
fn reopen(path: &std::path::Path) -> sled::Db {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(io))
                if io.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(other) => panic!("reopen db: {other:?}"),
        }
    }
}

#[test]
fn append_flush_reopen_reads_everything_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queue");
    {
        let db = sled::open(&path).expect("open new db");
        let tree = db.open_tree("pending").expect("open tree");
        for _ in 0..RECORDS {
            // Big-endian ids sort numerically as bytes: the order the queue relies on.
            let id = db.generate_id().expect("generate id");
            tree.insert(id.to_be_bytes(), record(id)).expect("insert");
        }
        let flushed = db.flush().expect("flush");
        assert!(flushed > 0, "flush wrote nothing");
    }
    let db = reopen(&path);
    let tree = db.open_tree("pending").expect("reopen tree");
    assert_eq!(tree.len() as u64, RECORDS);
    let mut previous: Option<u64> = None;
    for entry in tree.iter() {
        let (key, value) = entry.expect("read entry");
        let id = u64::from_be_bytes(key.as_ref().try_into().expect("8-byte key"));
        if let Some(previous) = previous {
            assert!(id > previous, "ids out of order: {previous} then {id}");
        }
        assert_eq!(value.as_ref(), record(id).as_slice());
        previous = Some(id);
    }
    // Ids keep increasing across a reopen, so nothing can overwrite an older record.
    let next = db.generate_id().expect("generate id after reopen");
    assert!(Some(next) > previous);
}
