//! The store conformance suite, and what only a shared server shows, against the
//! machine's PostgreSQL (`FERRY_TEST_POSTGRES`, by default
//! `postgres://postgres@127.0.0.1:5432/test`). Each test has its own schema, dropped
//! after it; a server that cannot be reached fails the tests, never skips them.

use std::sync::atomic::{AtomicU32, Ordering};

use ferry_store_core::conformance::{self, Fresh};
use ferry_store_core::{Mode, Policy, Reason, RunEnd, Status, Store};
use ferry_store_postgres::PgStore;

fn server() -> String {
    std::env::var("FERRY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Drops its schema when dropped.
struct Schema(String);

impl Schema {
    fn new() -> Schema {
        static N: AtomicU32 = AtomicU32::new(0);
        Schema(format!(
            "ferry_t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn target(&self) -> String {
        format!("{}?schema={}", server(), self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let mut c = postgres::Client::connect(&server(), postgres::NoTls)
            .expect("the test PostgreSQL server is reachable");
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .unwrap();
    }
}

fn fresh() -> Fresh {
    let schema = Schema::new();
    let store = PgStore::open(&schema.target(), Mode::ReadWrite).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} must be reachable for these tests: {e}",
            server()
        )
    });
    Fresh {
        store: Box::new(store),
        guard: Box::new(schema),
    }
}

ferry_store_core::conformance_tests!(fresh);

#[test]
fn a_newer_store_is_refused_and_read_only_creates_nothing() {
    let schema = Schema::new();
    let err = PgStore::open(&schema.target(), Mode::ReadOnly).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("no ferry store in schema `{}`", schema.0)),
        "{err}"
    );
    let mut c = postgres::Client::connect(&server(), postgres::NoTls).unwrap();
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema.0],
        )
        .unwrap()
        .get(0);
    assert!(!exists, "a read-only open created the schema");
    drop(PgStore::open(&schema.target(), Mode::ReadWrite).unwrap());
    c.batch_execute(&format!(
        "UPDATE {}.schema_version SET version = 99",
        schema.0
    ))
    .unwrap();
    for mode in [Mode::ReadOnly, Mode::ReadWrite] {
        let err = PgStore::open(&schema.target(), mode).unwrap_err();
        assert!(
            err.to_string()
                .contains("store schema version 99 is newer than this ferry knows"),
            "{err}"
        );
    }
}

#[test]
fn read_only_refuses_to_write() {
    let schema = Schema::new();
    drop(PgStore::open(&schema.target(), Mode::ReadWrite).unwrap());
    let mut store = PgStore::open(&schema.target(), Mode::ReadOnly).unwrap();
    let err = store.begin_run("bundle", Policy::Skip).unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");
}

#[test]
fn a_run_whose_session_ended_is_interrupted_and_a_live_one_is_not() {
    let schema = Schema::new();
    let mut dead = PgStore::open(&schema.target(), Mode::ReadWrite).unwrap();
    let mut live = PgStore::open(&schema.target(), Mode::ReadWrite).unwrap();
    let gone = dead.begin_run("crashed", Policy::Skip).unwrap();
    drop(dead); // the session ends, as when a process is killed
    let running = live.begin_run("running", Policy::Skip).unwrap();
    let mut third = PgStore::open(&schema.target(), Mode::ReadWrite).unwrap();
    let mine = third.begin_run("third", Policy::Skip).unwrap();
    let status = |id| {
        third
            .runs()
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
            .status
    };
    assert_eq!(status(gone), "interrupted");
    assert_eq!(status(running), "running", "another live loader's run");
    live.finish_run(running, &RunEnd::Completed, Default::default())
        .unwrap();
    assert_eq!(status(running), "completed");
    assert_eq!(status(mine), "running");
}

/// Loaders racing over the same records: every subject ends up created exactly once, the
/// other loader skips it, and no record fails.
#[test]
fn loaders_racing_over_the_same_records_create_each_once() {
    let schema = Schema::new();
    drop(PgStore::open(&schema.target(), Mode::ReadWrite).unwrap());
    let n = 600;
    let outcomes: Vec<Vec<Status>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut store = PgStore::open(&schema.target(), Mode::ReadWrite).unwrap();
                    let mut statuses = Vec::new();
                    // Small chunks, committed one by one, so that the loaders interleave.
                    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
                        let records = chunk
                            .iter()
                            .map(|i| {
                                conformance::record(
                                    &format!("s{i}"),
                                    &format!("u{i}"),
                                    &format!("{i}@x.org"),
                                )
                            })
                            .collect();
                        statuses.extend(
                            conformance::load(&mut store, Policy::Skip, records)
                                .into_iter()
                                .map(|o| o.status),
                        );
                    }
                    statuses
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let count = |s: Status| outcomes.iter().flatten().filter(|&&x| x == s).count();
    assert_eq!(count(Status::Created), n);
    assert_eq!(count(Status::Skipped), 3 * n);
    assert_eq!(count(Status::Failed), 0);
    let store = PgStore::open(&schema.target(), Mode::ReadOnly).unwrap();
    let mut subjects = 0;
    store
        .subjects(&mut |_| {
            subjects += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(subjects, n);
    let created: u64 = store.runs().unwrap().iter().map(|r| r.counts.created).sum();
    assert_eq!(created, n as u64, "the runs' counts are true");
}

/// A chunk that loses 3 races is written one record at a time; a record that loses 3 more
/// fails with User Management's message, and nothing of it is left behind.
#[test]
fn races_are_retried_three_times_then_the_record_fails() {
    let mut f = fresh();
    let records = |ids: &[&str]| {
        ids.iter()
            .map(|s| conformance::record(s, &format!("u-{s}"), &format!("{s}@x.org")))
            .collect::<Vec<_>>()
    };
    ferry_store_postgres::force_races(3);
    let out = conformance::load(&mut *f.store, Policy::Skip, records(&["s1", "s2"]));
    assert!(out.iter().all(|o| o.status == Status::Created), "{out:?}");
    ferry_store_postgres::force_races(6);
    let out = conformance::load(&mut *f.store, Policy::Skip, records(&["s3", "s4"]));
    assert_eq!(out[0].status, Status::Failed);
    assert_eq!(out[0].reason, Some(Reason::ConcurrencyConflict));
    assert_eq!(
        out[0].message.as_deref(),
        Some("Max retries exceeded for import.")
    );
    assert_eq!(out[1].status, Status::Created);
    assert!(!f.store.has_subject("s3").unwrap());
    assert!(f.store.has_subject("s4").unwrap());
    let runs = f.store.runs().unwrap();
    assert_eq!((runs[1].counts.created, runs[1].counts.failed), (1, 1));
}
