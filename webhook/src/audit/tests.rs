//! Behaviour of the audit log as the webhook and operators rely on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gitwarden_shared::audit::{FIRST_SEQ, GENESIS_HASH};
use jiff::{SignedDuration, Timestamp};

use super::files::segment_path;
use super::*;

fn event(user: &str, namespace: &str, decision: AuditDecision) -> AuditEvent {
    AuditEvent::new(decision, "not_from_git")
        .with_request_uid(format!("uid-{user}-{namespace}"))
        .with_message("managed by git")
        .with_user(user, None, vec!["system:authenticated".to_owned()])
        .with_operation("UPDATE")
        .with_resource("apps", "v1", "deployments", None)
        .with_object(Some(namespace.to_owned()), Some("web".to_owned()))
}

fn denied(user: &str) -> AuditEvent {
    event(user, "team-a", AuditDecision::Denied)
}

fn open(dir: &Path) -> AuditLog {
    AuditLog::open(dir, AuditOptions::default()).expect("open audit log")
}

fn small_files(max_file_bytes: u64) -> AuditOptions {
    AuditOptions {
        max_file_bytes,
        ..AuditOptions::default()
    }
}

async fn append_n(log: &AuditLog, n: usize) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    for i in 0..n {
        records.push(
            log.append(denied(&format!("user-{i}")))
                .await
                .expect("append"),
        );
    }
    records
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read segment")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn first_segment(dir: &Path) -> PathBuf {
    segment_path(dir, 1)
}

fn assert_intact(dir: &Path, records: u64) -> VerifyReport {
    let report = verify_dir(dir).expect("verify");
    assert_eq!(report.first_break, None, "{report:?}");
    assert_eq!(report.records, records);
    report
}

// ---- append and durability -------------------------------------------------

#[tokio::test]
async fn append_returns_only_once_the_record_is_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let record = log.append(denied("alice")).await.expect("append");

    let lines = read_lines(&first_segment(dir.path()));
    let on_disk: AuditRecord = serde_json::from_str(lines.last().expect("a line")).expect("parse");
    assert_eq!(on_disk, record);
}

#[tokio::test]
async fn the_durable_mark_follows_each_fsynced_record_and_starts_at_the_recovered_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    assert_eq!(log.durable().get(), 0, "an empty log has nothing durable");
    let records = append_n(&log, 3).await;
    assert_eq!(log.durable().get(), records[2].seq);
    log.close().await.expect("close");
    let reopened = open(dir.path());
    assert_eq!(reopened.durable().get(), records[2].seq);
}

#[tokio::test]
async fn first_record_links_to_genesis_with_seq_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let record = log.append(denied("alice")).await.expect("append");
    assert_eq!(record.seq, FIRST_SEQ);
    assert_eq!(record.prev, GENESIS_HASH);
    assert_eq!(record.verify_link(GENESIS_HASH), Ok(()));
}

#[tokio::test]
async fn consecutive_records_are_chained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let records = append_n(&log, 3).await;
    assert_eq!(records[1].prev, records[0].hash);
    assert_eq!(records[2].prev, records[1].hash);
    assert_eq!(records[2].seq, 3);
    assert_intact(dir.path(), 3);
}

#[tokio::test]
async fn chain_continues_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let before = append_n(&log, 2).await;
    log.close().await.expect("close");

    let log = open(dir.path());
    let after = log.append(denied("bob")).await.expect("append");
    assert_eq!(after.seq, 3);
    assert_eq!(after.prev, before[1].hash);
    assert_intact(dir.path(), 3);
}

#[tokio::test]
async fn a_second_writer_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = open(dir.path());
    let second = AuditLog::open(dir.path(), AuditOptions::default());
    assert!(
        matches!(second, Err(AuditError::Locked { .. })),
        "{second:?}"
    );
}

#[tokio::test]
async fn close_releases_the_directory_for_the_next_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    open(dir.path()).close().await.expect("close");
    assert!(AuditLog::open(dir.path(), AuditOptions::default()).is_ok());
}

// ---- crash recovery --------------------------------------------------------

#[tokio::test]
async fn torn_tail_without_newline_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let before = append_n(&log, 2).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    let intact_len = std::fs::metadata(&path).expect("stat").len();
    append_bytes(&path, b"{\"id\":\"000000000003-abc");

    let log = open(dir.path());
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), intact_len);
    let next = log.append(denied("carol")).await.expect("append");
    assert_eq!(next.seq, 3);
    assert_eq!(next.prev, before[1].hash);
    assert_intact(dir.path(), 3);
}

#[tokio::test]
async fn invalid_last_line_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 2).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    append_bytes(&path, b"\0\0\0\0\n");

    let log = open(dir.path());
    log.append(denied("carol")).await.expect("append");
    assert_intact(dir.path(), 3);
}

#[tokio::test]
async fn damage_beyond_the_last_line_stops_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 2).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    append_bytes(&path, b"garbage\ntorn");

    let reopened = AuditLog::open(dir.path(), AuditOptions::default());
    assert!(
        matches!(reopened, Err(AuditError::CorruptTail { .. })),
        "{reopened:?}"
    );
    // Only the torn fragment went; the damaged line stays for `verify`.
    assert!(read_lines(&path).iter().any(|line| line == "garbage"));
}

#[tokio::test]
async fn empty_newest_file_after_a_crash_during_rotation_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let before = append_n(&log, 2).await;
    log.close().await.expect("close");
    std::fs::write(segment_path(dir.path(), 2), b"").expect("create empty segment");

    let log = open(dir.path());
    let next = log.append(denied("dave")).await.expect("append");
    assert_eq!(next.prev, before[1].hash);
    assert_eq!(read_lines(&segment_path(dir.path(), 2)).len(), 1);
    assert_intact(dir.path(), 3);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    file.write_all(bytes).expect("append bytes");
}

// ---- verification ----------------------------------------------------------

#[tokio::test]
async fn verify_reports_a_tampered_middle_record_by_file_line_and_seq() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 5).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    let mut lines = read_lines(&path);
    lines[2] = lines[2].replace("user-2", "someone-else");
    std::fs::write(&path, lines.join("\n") + "\n").expect("rewrite");

    let report = verify_dir(dir.path()).expect("verify");
    let broken = report.first_break.expect("a break");
    assert_eq!(broken.file, path);
    assert_eq!(broken.line, 3);
    assert_eq!(broken.seq, Some(3));
    assert!(broken.why.contains("hash"), "{}", broken.why);
    assert_eq!(report.records, 2);
}

#[tokio::test]
async fn verify_reports_a_deleted_record_as_a_sequence_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 4).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    let mut lines = read_lines(&path);
    lines.remove(1);
    std::fs::write(&path, lines.join("\n") + "\n").expect("rewrite");

    let broken = verify_dir(dir.path())
        .expect("verify")
        .first_break
        .expect("a break");
    assert_eq!((broken.line, broken.seq), (2, Some(3)));
    assert!(broken.why.contains("sequence gap"), "{}", broken.why);
}

#[tokio::test]
async fn verify_reports_a_rehashed_record_by_its_broken_successor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 3).await;
    log.close().await.expect("close");
    let path = first_segment(dir.path());
    let mut lines = read_lines(&path);
    // A careful forger edits record 2 and recomputes its hash and id…
    let mut forged: AuditRecord = serde_json::from_str(&lines[1]).expect("parse");
    forged.user = "nobody".to_owned();
    let prev = forged.prev.clone();
    let forged = forged.seal(&prev);
    lines[1] = serde_json::to_string(&forged).expect("serialise");
    std::fs::write(&path, lines.join("\n") + "\n").expect("rewrite");

    // …and record 3 no longer links to it.
    let broken = verify_dir(dir.path())
        .expect("verify")
        .first_break
        .expect("a break");
    assert_eq!((broken.line, broken.seq), (3, Some(3)));
    assert!(broken.why.contains("prev"), "{}", broken.why);
}

#[tokio::test]
async fn verify_reports_missing_early_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), small_files(1)).expect("open");
    append_n(&log, 3).await;
    log.close().await.expect("close");
    std::fs::remove_file(first_segment(dir.path())).expect("remove");

    let broken = verify_dir(dir.path())
        .expect("verify")
        .first_break
        .expect("a break");
    assert_eq!(broken.file, segment_path(dir.path(), 2));
    assert!(broken.why.contains("starts at seq 2"), "{}", broken.why);
}

#[tokio::test]
async fn verify_ignores_an_incomplete_tail_of_the_newest_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    append_n(&log, 2).await;
    log.close().await.expect("close");
    append_bytes(&first_segment(dir.path()), b"{\"id\":");

    let report = assert_intact(dir.path(), 2);
    assert_eq!(report.incomplete_tail, Some(first_segment(dir.path())));
}

#[test]
fn verify_of_an_empty_dir_is_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = assert_intact(dir.path(), 0);
    assert_eq!(report.last_hash, GENESIS_HASH);
    assert_eq!(report.last_seq, None);
}

#[tokio::test]
async fn verify_report_names_the_last_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let records = append_n(&log, 2).await;
    let report = assert_intact(dir.path(), 2);
    assert_eq!(report.last_hash, records[1].hash);
    assert_eq!(report.last_seq, Some(2));
    assert!(render_report(dir.path(), &report).contains("OK"));
}

// ---- rotation --------------------------------------------------------------

#[tokio::test]
async fn rotation_keeps_one_chain_across_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), small_files(1500)).expect("open");
    let records = append_n(&log, 12).await;

    let report = assert_intact(dir.path(), 12);
    assert!(report.files >= 3, "only {} files", report.files);
    // The first record of file 2 links to the last record of file 1.
    let last_of_first = read_lines(&segment_path(dir.path(), 1))
        .pop()
        .expect("line");
    let first_of_second = read_lines(&segment_path(dir.path(), 2)).remove(0);
    let last_of_first: AuditRecord = serde_json::from_str(&last_of_first).expect("parse");
    let first_of_second: AuditRecord = serde_json::from_str(&first_of_second).expect("parse");
    assert_eq!(first_of_second.prev, last_of_first.hash);
    assert_eq!(report.last_hash, records[11].hash);
}

#[tokio::test]
async fn rotation_continues_the_file_numbering_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), small_files(1)).expect("open");
    append_n(&log, 2).await;
    log.close().await.expect("close");

    let log = AuditLog::open(dir.path(), small_files(1)).expect("reopen");
    append_n(&log, 1).await;
    assert!(segment_path(dir.path(), 3).exists());
    assert_intact(dir.path(), 3);
}

#[tokio::test]
async fn a_failed_batch_fails_every_waiter_and_leaves_the_chain_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), small_files(1)).expect("open");
    append_n(&log, 1).await;
    // The next rotation cannot create its file: a directory is in the way.
    let blocker = segment_path(dir.path(), 2);
    std::fs::create_dir(&blocker).expect("block");

    let results =
        futures::future::join_all((0..5).map(|i| log.append(denied(&format!("x{i}"))))).await;
    assert!(
        results
            .iter()
            .all(|result| matches!(result, Err(AuditError::Write { op: "create", .. }))),
        "{results:?}"
    );
    assert!(log.stats().failed_batches >= 1);

    std::fs::remove_dir(&blocker).expect("unblock");
    let next = log
        .append(denied("after"))
        .await
        .expect("append after the fault");
    assert_eq!(next.seq, 2);
    assert!(log.is_healthy());
    assert_intact(dir.path(), 2);
}

// ---- group commit ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(AuditMetrics::new());
    let options = AuditOptions {
        metrics: Some(Arc::clone(&metrics)),
        ..AuditOptions::default()
    };
    let log = AuditLog::open(dir.path(), options).expect("open");

    let appends = (0..200).map(|i| {
        let log = log.clone();
        tokio::spawn(async move { log.append(denied(&format!("user-{i}"))).await })
    });
    let mut seqs = Vec::new();
    for handle in futures::future::join_all(appends).await {
        seqs.push(handle.expect("task").expect("append").seq);
    }

    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    let stats = log.stats();
    assert_eq!(stats.records, 200);
    assert!(stats.fsyncs < 200, "{stats:?}");
    assert!(stats.batches < 200, "{stats:?}");
    assert_eq!(metrics.records.get(), 200);
    assert_eq!(metrics.fsyncs.get(), stats.fsyncs);
    assert_intact(dir.path(), 200);
}

// ---- query -----------------------------------------------------------------

async fn sample_log(dir: &Path) -> AuditLog {
    let log = open(dir);
    let old = Timestamp::now() - SignedDuration::from_hours(2);
    for event in [
        denied("alice").with_time(old),
        event("bob", "team-b", AuditDecision::Denied),
        event("alice", "team-b", AuditDecision::BreakGlass),
        event("carol", "team-a", AuditDecision::Denied),
    ] {
        log.append(event).await.expect("append");
    }
    log
}

fn users(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|record| record.user.as_str()).collect()
}

#[tokio::test]
async fn query_returns_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let records = log.query(AuditQuery::default()).await.expect("query");
    assert_eq!(users(&records), vec!["carol", "alice", "bob", "alice"]);
}

#[tokio::test]
async fn query_filters_by_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let query = AuditQuery {
        user: Some("alice".to_owned()),
        ..AuditQuery::default()
    };
    let records = log.query(query).await.expect("query");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 1]
    );
}

#[tokio::test]
async fn query_filters_by_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let query = AuditQuery {
        namespace: Some("team-b".to_owned()),
        ..AuditQuery::default()
    };
    assert_eq!(
        users(&log.query(query).await.expect("query")),
        vec!["alice", "bob"]
    );
}

#[tokio::test]
async fn query_filters_by_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let query = AuditQuery {
        decision: Some(AuditDecision::BreakGlass),
        ..AuditQuery::default()
    };
    let records = log.query(query).await.expect("query");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, AuditDecision::BreakGlass);
}

#[tokio::test]
async fn query_filters_by_object_across_newer_records_of_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    let api = event("alice", "team-a", AuditDecision::Denied)
        .with_object(Some("team-a".to_owned()), Some("api".to_owned()));
    let web_configmap = event("bob", "team-a", AuditDecision::Denied)
        .with_resource("", "v1", "configmaps", None)
        .with_object(Some("team-a".to_owned()), Some("web".to_owned()));
    log.append(api.clone()).await.expect("append");
    // Newer records about other objects, more than the limit asked for.
    for _ in 0..5 {
        log.append(denied("carol")).await.expect("append");
        log.append(web_configmap.clone()).await.expect("append");
    }
    let query = AuditQuery {
        group: Some("apps".to_owned()),
        resource: Some("deployments".to_owned()),
        namespace: Some("team-a".to_owned()),
        name: Some("api".to_owned()),
        limit: 3,
        ..AuditQuery::default()
    };
    let records = log.query(query).await.expect("query");
    assert_eq!(users(&records), vec!["alice"]);
    let core = AuditQuery {
        group: Some(String::new()),
        name: Some("web".to_owned()),
        ..AuditQuery::default()
    };
    let records = log.query(core).await.expect("query");
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.resource == "configmaps"));
}

#[tokio::test]
async fn query_filters_by_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let query = AuditQuery {
        since: Some(Timestamp::now() - SignedDuration::from_hours(1)),
        ..AuditQuery::default()
    };
    assert_eq!(
        users(&log.query(query).await.expect("query")),
        vec!["carol", "alice", "bob"]
    );
}

#[tokio::test]
async fn query_stops_at_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path()).await;
    let query = AuditQuery {
        limit: 2,
        ..AuditQuery::default()
    };
    assert_eq!(
        users(&log.query(query).await.expect("query")),
        vec!["carol", "alice"]
    );
}

#[test]
fn query_limit_is_capped() {
    let query = AuditQuery {
        limit: usize::MAX,
        ..AuditQuery::default()
    };
    assert_eq!(query.effective_limit(), MAX_LIMIT);
    assert_eq!(AuditQuery::default().limit, DEFAULT_LIMIT);
}

#[tokio::test]
async fn query_reads_across_rotated_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), small_files(1)).expect("open");
    append_n(&log, 5).await;
    let records = log.query(AuditQuery::default()).await.expect("query");
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
}

#[test]
fn query_parses_from_an_http_query_string() {
    let uri: http::Uri =
        "/audit?since=2026-11-03T10:00:00Z&decision=break-glass&namespace=team-a&limit=50"
            .parse()
            .expect("uri");
    let axum::extract::Query(query) =
        axum::extract::Query::<AuditQuery>::try_from_uri(&uri).expect("parse");
    assert_eq!(query.decision, Some(AuditDecision::BreakGlass));
    assert_eq!(query.namespace.as_deref(), Some("team-a"));
    assert_eq!(query.limit, 50);
    assert_eq!(
        query.since,
        Some("2026-11-03T10:00:00Z".parse().expect("time"))
    );
}

#[test]
fn query_without_limit_gets_the_default() {
    let uri: http::Uri = "/audit?user=alice".parse().expect("uri");
    let axum::extract::Query(query) =
        axum::extract::Query::<AuditQuery>::try_from_uri(&uri).expect("parse");
    assert_eq!(query.limit, DEFAULT_LIMIT);
}

// ---- merge -----------------------------------------------------------------

/// A sealed record of `user` at `minutes` past a fixed hour, as replica
/// `replica`'s `seq`-th record (its own chain).
fn at(replica: &str, seq: u64, user: &str, minutes: i64) -> AuditRecord {
    let time: Timestamp = "2026-11-03T10:00:00Z".parse().expect("time");
    denied(user)
        .with_request_uid(format!("{replica}-{seq}"))
        .with_time(time + SignedDuration::from_mins(minutes))
        .into_record(seq)
        .seal(GENESIS_HASH)
}

#[test]
fn merge_interleaves_replicas_newest_first() {
    let here = vec![
        at("a", 3, "a3", 50),
        at("a", 2, "a2", 20),
        at("a", 1, "a1", 0),
    ];
    let peer = vec![at("b", 2, "b2", 40), at("b", 1, "b1", 10)];
    let merged = merge_newest_first(vec![here, peer], 100);
    assert_eq!(users(&merged), vec!["a3", "b2", "a2", "b1", "a1"]);
}

#[test]
fn merge_keeps_at_most_the_limit_newest() {
    let here = vec![at("a", 2, "a2", 30), at("a", 1, "a1", 0)];
    let peer = vec![at("b", 2, "b2", 40), at("b", 1, "b1", 10)];
    let merged = merge_newest_first(vec![here, peer], 3);
    assert_eq!(users(&merged), vec!["b2", "a2", "b1"]);
    assert!(merge_newest_first(vec![vec![at("a", 1, "a1", 0)]], 0).is_empty());
}

#[test]
fn merge_keeps_the_order_of_answers_for_equal_times() {
    let here = vec![at("a", 2, "a2", 5), at("a", 1, "a1", 5)];
    let peer = vec![at("b", 1, "b1", 5)];
    let merged = merge_newest_first(vec![here, vec![], peer], 100);
    assert_eq!(users(&merged), vec!["a2", "a1", "b1"]);
}

#[test]
fn merge_lists_a_record_found_twice_once() {
    let record = at("a", 1, "a1", 0);
    let merged = merge_newest_first(
        vec![vec![record.clone()], vec![at("b", 1, "b1", 1), record]],
        100,
    );
    assert_eq!(users(&merged), vec!["b1", "a1"]);
}

#[test]
fn merge_of_nothing_is_nothing() {
    assert!(merge_newest_first(Vec::new(), 100).is_empty());
    assert!(merge_newest_first(vec![vec![], vec![]], 100).is_empty());
}
