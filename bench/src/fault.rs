//! The fault run: 20,000 denied AdmissionReviews at concurrency 16 against a
//! real gitwarden-webhook process, killed with SIGKILL half-way and restarted
//! on the same audit directory. Afterwards every denial a client received
//! must have its audit record (matched by request uid), and
//! `gitwarden-webhook verify` must find the hash chain intact.
//!
//! Requests that fail while the webhook is down are retried with the same
//! uid, as the API server's client would see them answered eventually; a
//! record whose answer was lost in the kill is allowed (recorded, never
//! acknowledged), a denial without a record is not.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitwarden_tests::admission_review::{AdmissionReview, managed_deployment};
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use serde_json::Value;

/// Fault-run settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Denied reviews to send in all.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Closed-loop workers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Kill the webhook (SIGKILL) once this many denials were answered.
    #[arg(long, default_value_t = 10_000)]
    kill_at: usize,
    /// The gitwarden-webhook binary (default: next to this one; build with --release).
    #[arg(long)]
    webhook_bin: Option<PathBuf>,
}

/// A human's UPDATE of a gitwarden-managed Deployment: always denied, audited.
fn denied_review(uid: &str) -> Vec<u8> {
    AdmissionReview::update(managed_deployment("shop", "web", 3))
        .uid(uid)
        .by("alice", &["system:authenticated"])
        .to_bytes()
}

/// The audit record id named in a denial message.
fn audit_id(message: &str) -> Option<String> {
    let start = message.find("audit record ")? + "audit record ".len();
    let id: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}

/// One attempt: `Some(audit id)` when the webhook answered with an audited
/// denial, `None` when the attempt failed (connection refused or reset).
async fn send(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Option<String>> {
    let resp = match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(_) => return Ok(None),
    };
    if !resp.status().is_success() {
        return Ok(None);
    }
    let Ok(review) = resp.json::<Value>().await else {
        return Ok(None);
    };
    let response = &review["response"];
    if response["allowed"] != Value::Bool(false) {
        bail!("a denial was allowed: {review}");
    }
    let message = response["status"]["message"].as_str().unwrap_or_default();
    audit_id(message)
        .map(Some)
        .with_context(|| format!("a denial without an audit record id: {message:?}"))
}

/// Every record of the audit log: request uid → record ids (damaged lines
/// are `verify`'s to report; here only ids count).
fn stored_records(webhook: &LoopbackWebhook) -> HashMap<String, Vec<String>> {
    let mut records: HashMap<String, Vec<String>> = HashMap::new();
    for record in webhook.audit_records() {
        records
            .entry(record.request_uid)
            .or_default()
            .push(record.id);
    }
    records
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me
        .parent()
        .context("executable has no directory")?
        .join(name))
}

/// Runs the fault scenario and prints what it found; fails when a denial a
/// client saw has no record or the chain does not verify.
pub async fn run(opts: Options) -> Result<()> {
    let bin = match &opts.webhook_bin {
        Some(p) => p.clone(),
        None => sibling("gitwarden-webhook")?,
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p gitwarden-webhook` (scripts/bench does)",
            bin.display()
        );
    }
    // The built-in policy, no cluster; restartable on the same port,
    // certificate and audit log.
    let webhook = LoopbackWebhook::launch(PolicySource::BuiltIn)
        .binary(&bin)
        .log_level("warn")
        .start()
        .await?;
    let client = webhook.http().clone();
    let base = webhook.url.clone();
    println!(
        "fault run: {} denied reviews, {} workers, kill -9 after {} answers; audit log in {}",
        opts.requests,
        opts.concurrency,
        opts.kill_at,
        webhook.audit_dir().display()
    );

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let url = format!("{base}/validate");
    let mut workers = Vec::new();
    for _ in 0..opts.concurrency {
        let (client, url, next, answered, failed, seen) = (
            client.clone(),
            url.clone(),
            next.clone(),
            answered.clone(),
            failed_attempts.clone(),
            seen.clone(),
        );
        let total = opts.requests;
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let uid = format!("fault-{n:05}");
                let body = denied_review(&uid);
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    if let Some(id) = send(&client, &url, body.clone()).await? {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((uid, id));
                        answered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                    if Instant::now() > give_up {
                        bail!("{uid} was not answered within 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // Pull the plug once half the denials were answered, then restart on
    // the same audit directory.
    while answered.load(Ordering::Relaxed) < opts.kill_at.min(opts.requests) {
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let answered_at_kill = answered.load(Ordering::Relaxed);
    let killed = Instant::now();
    webhook.kill();
    let failures_before_restart = failed_attempts.load(Ordering::Relaxed);
    webhook.restart().await?;
    let downtime = killed.elapsed();

    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed();
    webhook.kill();

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let stored = stored_records(&webhook);
    let stored_ids: BTreeSet<&str> = stored.values().flatten().map(String::as_str).collect();
    let missing: Vec<&(String, String)> = seen
        .iter()
        .filter(|(_, id)| !stored_ids.contains(id.as_str()))
        .collect();
    // Records beyond one per answered denial: requests in flight at the
    // kill were recorded but never answered, and were retried (same uid).
    let extra = stored_ids.len().saturating_sub(seen.len());
    let uids_recorded_twice = stored.values().filter(|ids| ids.len() > 1).count();
    let (verified, verify_text) = webhook.verify()?;
    let verify_text = verify_text.trim().to_string();
    let verify_summary: Vec<&str> = verify_text
        .lines()
        .skip(1)
        .filter(|l| l.contains("records:") || l.contains("first break"))
        .map(str::trim)
        .collect();

    println!(
        "  denials answered          {} of {} ({} before the kill, at {} answered)",
        seen.len(),
        opts.requests,
        answered_at_kill,
        opts.kill_at
    );
    println!(
        "  failed attempts (retried) {} ({} before the restart began)",
        failed_attempts.load(Ordering::Relaxed),
        failures_before_restart
    );
    println!(
        "  audit records stored      {} ({extra} more than answered: {uids_recorded_twice} uids \
         recorded twice, in flight at the kill and retried)",
        stored_ids.len(),
    );
    println!(
        "  denials without a record  {} [{}]",
        missing.len(),
        if missing.is_empty() { "ok" } else { "LOST" }
    );
    println!(
        "  verify                    {} [{}]",
        verify_summary.join("; "),
        if verified { "ok" } else { "BROKEN" }
    );
    println!(
        "  time                      {:.2} s in all ({:.0} denials/s), kill to ready again {} ms",
        elapsed.as_secs_f64(),
        seen.len() as f64 / elapsed.as_secs_f64(),
        downtime.as_millis()
    );
    if !missing.is_empty() {
        bail!(
            "{} denials a client saw have no audit record, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    if !verified {
        bail!("gitwarden-webhook verify failed:\n{verify_text}");
    }
    Ok(())
}
