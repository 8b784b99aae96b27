//! The admission guard: while the agent leads, every webhook configuration,
//! admission policy and binding that is neither in git nor allowed by the
//! policy is deleted within seconds of its creation, and recorded.
//!
//! No API-registered webhook sees these kinds, so gitwarden's webhook cannot
//! refuse them; without the guard a cluster-admin could add a webhook or a
//! ValidatingAdmissionPolicy that rewrites or blocks what the agent applies.
//! The guard watches each such kind the API server serves (and the agent may
//! list, watch and delete), judges each object as it appears
//! ([`gitwarden_agent::admission_chain::judge`]), and deletes with a UID
//! precondition, so an object re-created under the same name is judged anew.
//! Each removal gets a Warning Event `AdmissionObjectRemoved`, a count in
//! `gitwarden_agent_admission_objects_removed_total{kind}`, a log line and an
//! audit record sent to the webhook.
//!
//! Objects that git contains are healed by the drift watch, with
//! server-side apply — which cannot take away what someone *added* (an extra
//! webhook entry, a `matchConditions` entry that disables a webhook). The
//! guard compares them with git's manifest as the API server defaults it and
//! restores git's content when they differ
//! ([`gitwarden_shared::admission_object`]), keeping the
//! `caBundle` that gitwarden-certs injects: Warning Event
//! `AdmissionObjectRestored`, `gitwarden_agent_admission_objects_restored_total{kind}`.
//! An object from git that someone *deletes* (which no webhook can refuse:
//! gitwarden's own webhook configuration is such an object) is created again
//! at once, not at the next sync, with the `caBundle` it held
//! ([`recreate`]): Warning Event `AdmissionObjectRecreated`, counted as
//! restored.
//!
//! It removes nothing before it knows what git contains (a verified revision
//! loaded) and what the policy allows (the policy ConfigMap was read): a
//! fresh agent must not delete gitwarden's own webhook configurations before
//! it has seen them in git.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gitwarden_agent::admission_chain::{
    ADMISSION_GROUP, AdmissionKind, Arming, GitObjects, PolicyInForce, Verdict, arming, judge, key,
};
use gitwarden_agent::audit::{AgentReportReason, AuditRecord, AuditSink, Submitted};
use gitwarden_apply::{Discovery, InventoryStore};
use gitwarden_shared::admission_object;
use gitwarden_shared::names::FIELD_MANAGER;
use gitwarden_shared::policy::AdmissionChainPolicy;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::discovery::ApiResource;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::cli::Namespaced;
use crate::reporter::Reporter;
use gitwarden_agent::status::{AuditFate, GuardState, GuardStatus, Removal};

mod recreate;

/// How often deletes that failed (API errors) are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Where removals are audited.
#[derive(Debug, Clone)]
pub enum Audit {
    /// No `--audit-url`: removals are logged, evented and counted only.
    NotAudited,
    /// Records go to the webhook's audit log.
    Webhook(AuditSink),
}

/// What the guard needs besides the client.
pub struct GuardSettings {
    /// The policy ConfigMap.
    pub policy_configmap: Namespaced,
    /// The agent's inventory: objects it applied that may have left git
    /// since (prune decides about those, not the guard).
    pub inventory: InventoryStore,
    /// Where removals are audited.
    pub audit: Audit,
}

/// What the guard knows of one live object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    uid: String,
    /// Deleted, but held by finalizers: still in force until they go.
    terminating: bool,
    /// Its webhooks' `caBundle`s by webhook name (git does not hold them):
    /// what it is created again with if it is git's and gets deleted.
    ca_bundles: Vec<(String, String)>,
}

/// How the guard put an admission object from git back: counted alike
/// (`…_admission_objects_restored_total`), told apart in Events and the
/// audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutBack {
    /// Changed beyond what a re-apply heals: replaced in place.
    Restored,
    /// Deleted: created again ([`recreate`]).
    Recreated,
}

impl PutBack {
    fn reason(self) -> AgentReportReason {
        match self {
            PutBack::Restored => AgentReportReason::AdmissionObjectRestored,
            PutBack::Recreated => AgentReportReason::AdmissionObjectRecreated,
        }
    }

    /// The audit record's operation: what the agent did.
    fn operation(self) -> &'static str {
        match self {
            PutBack::Restored => "UPDATE",
            PutBack::Recreated => "CREATE",
        }
    }

    /// The Event's reason and action.
    fn event(self) -> (&'static str, &'static str) {
        match self {
            PutBack::Restored => ("AdmissionObjectRestored", "Restore"),
            PutBack::Recreated => ("AdmissionObjectRecreated", "Create"),
        }
    }

    fn message(self, kind: AdmissionKind, name: &str, revision: &str) -> String {
        match self {
            PutBack::Restored => format!(
                "{kind} {name:?} from git was changed beyond what a re-apply heals (an added webhook, match condition, selector or other field); restored to git revision {revision}"
            ),
            PutBack::Recreated => format!(
                "{kind} {name:?} from git was deleted, which no webhook can refuse; created again from git revision {revision}"
            ),
        }
    }
}

/// One admission kind the guard watches.
#[derive(Debug, Clone)]
struct Watched {
    kind: AdmissionKind,
    resource: ApiResource,
}

/// What a kind's watch saw.
#[derive(Debug)]
enum Seen {
    /// A (re-)list of the kind starts: forget what was known of it.
    Relist(usize),
    /// The object exists (created, changed or listed).
    Present(usize, String, Live),
    /// The object is gone.
    Gone(usize, String),
    /// A (re-)list of the kind is complete: what was known before it and is
    /// not listed now was deleted while the watch was away.
    Listed(usize),
}

/// Runs the guard until the future is dropped (leadership ends). Returns
/// only when there is nothing to guard (then it pends forever).
pub async fn guard(
    client: kube::Client,
    discovery: Arc<Discovery>,
    git: watch::Receiver<Option<Arc<GitObjects>>>,
    settings: GuardSettings,
    reporter: Arc<Reporter>,
) {
    let span = tracing::info_span!("admission_guard");
    async move {
        let (watched, skipped) = select_kinds(&client, &discovery).await;
        reporter.admission_guard(GuardStatus {
            state: GuardState::Waiting,
            watching: watched
                .iter()
                .map(|w| format!("{} ({})", w.kind, w.resource.api_version))
                .collect(),
            skipped: skipped.clone(),
        });
        if watched.is_empty() {
            tracing::warn!(?skipped, "the admission chain is not guarded: no admission kind can be watched and deleted");
            reporter.admission_guard_state(GuardState::Off);
            return std::future::pending().await;
        }
        tracing::info!(
            watching = ?watched.iter().map(|w| w.kind.kind()).collect::<Vec<_>>(),
            "guarding the admission chain: objects neither in git nor allowed by the policy are deleted"
        );
        if matches!(settings.audit, Audit::NotAudited) {
            tracing::warn!("no --audit-url: admission objects the agent removes are logged, evented and counted, but not recorded in the audit log");
        }
        let (policy_tx, policy) = watch::channel(None);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(crate::policy_watch::follow(
            client.clone(),
            settings.policy_configmap.clone(),
            policy_tx,
        ));
        let (seen_tx, seen) = mpsc::channel(256);
        for (index, w) in watched.iter().enumerate() {
            tasks.spawn(watch_kind(
                client.clone(),
                index,
                w.clone(),
                seen_tx.clone(),
            ));
        }
        drop(seen_tx);
        let _off = OffWhenDropped(reporter.clone());
        let mut judge = Guard {
            recorder: crate::events::recorder(client.clone()),
            client,
            watched,
            settings,
            reporter,
            live: BTreeMap::new(),
            before_relist: BTreeMap::new(),
            deleted: BTreeMap::new(),
            recreate_after: std::collections::HashMap::new(),
            failed: HashSet::new(),
            recorded: HashSet::new(),
            defaulted: std::collections::HashMap::new(),
            arming: None,
            applied_once: false,
        };
        judge.run(seen, git, policy).await;
        drop(tasks);
    }
    .instrument(span)
    .await
}

/// Reports the guard `off` when it stops (leadership ended).
struct OffWhenDropped(Arc<Reporter>);

impl Drop for OffWhenDropped {
    fn drop(&mut self) {
        self.0.admission_guard_state(GuardState::Off);
    }
}

/// The kinds to watch, and what is skipped and why (said once, here).
async fn select_kinds(client: &kube::Client, discovery: &Discovery) -> (Vec<Watched>, Vec<String>) {
    let served = discovery.watchable_kinds_of(ADMISSION_GROUP);
    let mut watched = Vec::new();
    let mut skipped = Vec::new();
    for kind in AdmissionKind::ALL {
        let Some(resolved) = served.iter().find(|r| r.resource.kind == kind.kind()) else {
            tracing::info!(%kind, "not served by this API server (or not listable, watchable and deletable): not guarded");
            skipped.push(format!("{kind}: not served"));
            continue;
        };
        let resource = resolved.resource.clone();
        let mut refused = Vec::new();
        for verb in ["list", "watch", "delete"] {
            if !permitted(client, &resource, verb).await {
                refused.push(verb);
            }
        }
        if refused.is_empty() {
            watched.push(Watched { kind, resource });
        } else {
            tracing::warn!(%kind, verbs = ?refused, "the agent may not do this with these objects: not guarded (grant it in the agent's ClusterRole)");
            skipped.push(format!("{kind}: not permitted ({})", refused.join(", ")));
        }
    }
    (watched, skipped)
}

/// Whether the agent may `verb` every object of `resource` (a
/// SelfSubjectAccessReview). When the review itself fails, the answer is
/// "yes": the watch then reports what really happens.
async fn permitted(client: &kube::Client, resource: &ApiResource, verb: &str) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(resource.group.clone()),
                resource: Some(resource.plural.clone()),
                verb: Some(verb.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
    {
        Ok(answer) => answer.status.is_some_and(|s| s.allowed),
        Err(e) => {
            tracing::debug!(resource = %resource.plural, verb, error = %e, "access review failed; trying anyway");
            true
        }
    }
}

/// Watches one kind (whole objects: they are few and small, and a deleted
/// one is created again with its `caBundle`) and forwards what it sees.
async fn watch_kind(client: kube::Client, index: usize, w: Watched, seen: mpsc::Sender<Seen>) {
    let api: Api<DynamicObject> = Api::all_with(client, &w.resource);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let message = match event {
            Ok(watcher::Event::Init) => Seen::Relist(index),
            Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => {
                let terminating = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .as_ref()
                        .is_some_and(|f| !f.is_empty());
                let ca_bundles = admission_object::ca_bundles(&o.data);
                let (Some(name), Some(uid)) = (o.metadata.name, o.metadata.uid) else {
                    continue;
                };
                Seen::Present(
                    index,
                    name,
                    Live {
                        uid,
                        terminating,
                        ca_bundles,
                    },
                )
            }
            Ok(watcher::Event::Delete(o)) => {
                let Some(name) = o.metadata.name else {
                    continue;
                };
                Seen::Gone(index, name)
            }
            Ok(watcher::Event::InitDone) => Seen::Listed(index),
            Err(e) => {
                tracing::debug!(kind = %w.kind, error = %e, "admission watch interrupted; retrying");
                continue;
            }
        };
        if seen.send(message).await.is_err() {
            return;
        }
    }
}

/// The guard's state: what exists, and what could not be deleted yet.
struct Guard {
    client: kube::Client,
    watched: Vec<Watched>,
    settings: GuardSettings,
    reporter: Arc<Reporter>,
    recorder: Recorder,
    /// Every live object: (kind index, name) → what is known of it.
    live: BTreeMap<(usize, String), Live>,
    /// Per kind being re-listed: what was live before the list began.
    before_relist: BTreeMap<usize, Vec<(String, Live)>>,
    /// Objects that were live and were deleted, with what they were: created
    /// again if git has them.
    deleted: BTreeMap<(usize, String), Live>,
    /// Re-creations that failed for a reason that may pass (the API server
    /// unavailable, throttled): not tried again before this.
    recreate_after: std::collections::HashMap<(usize, String), tokio::time::Instant>,
    /// The uids already recorded as removed (a delete held by finalizers
    /// is finished later, and must not count twice).
    recorded: HashSet<String>,
    /// Objects whose delete failed, tried again every [`RETRY`].
    failed: HashSet<(usize, String)>,
    /// Git's admission objects as the API server defaults them, per body.
    defaulted: std::collections::HashMap<
        gitwarden_manifests::ObjectRef,
        (Arc<serde_json::Value>, serde_json::Value),
    >,
    /// What the guard waited for last (logged when it changes).
    arming: Option<Arming>,
    /// A sync has applied git since this replica leads.
    applied_once: bool,
}

impl Guard {
    async fn run(
        &mut self,
        mut seen: mpsc::Receiver<Seen>,
        mut git: watch::Receiver<Option<Arc<GitObjects>>>,
        mut policy: watch::Receiver<Option<PolicyInForce>>,
    ) {
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut git_open = true;
        let mut policy_open = true;
        loop {
            let changed: Vec<(usize, String)> = tokio::select! {
                message = seen.recv() => match message {
                    Some(Seen::Relist(index)) => {
                        let known = self
                            .live
                            .iter()
                            .filter(|((i, _), _)| *i == index)
                            .map(|((_, name), live)| (name.clone(), live.clone()))
                            .collect();
                        // A list that failed before it completed starts
                        // again: keep what was known before the first.
                        self.before_relist.entry(index).or_insert(known);
                        self.live.retain(|(i, _), _| *i != index);
                        Vec::new()
                    }
                    Some(Seen::Listed(index)) => {
                        for (name, live) in self.before_relist.remove(&index).unwrap_or_default() {
                            if !self.live.contains_key(&(index, name.clone())) {
                                self.deleted.insert((index, name), live);
                            }
                        }
                        Vec::new()
                    }
                    Some(Seen::Present(index, name, live)) => {
                        self.deleted.remove(&(index, name.clone()));
                        self.recreate_after.remove(&(index, name.clone()));
                        self.live.insert((index, name.clone()), live);
                        vec![(index, name)]
                    }
                    Some(Seen::Gone(index, name)) => {
                        if let Some(live) = self.live.remove(&(index, name.clone())) {
                            self.recorded.remove(&live.uid);
                            self.deleted.insert((index, name.clone()), live);
                        }
                        self.failed.remove(&(index, name));
                        Vec::new()
                    }
                    None => return,
                },
                result = git.changed(), if git_open => {
                    git_open = result.is_ok();
                    self.live.keys().cloned().collect()
                }
                result = policy.changed(), if policy_open => {
                    policy_open = result.is_ok();
                    self.live.keys().cloned().collect()
                }
                _ = retry.tick() => self.failed.iter().cloned().collect(),
            };
            let git_now = git.borrow().clone();
            let policy_now = policy.borrow().clone();
            self.applied_once |= git_now.as_ref().is_some_and(|g| g.applied());
            let now = arming(git_now.as_deref(), policy_now.as_ref(), self.applied_once);
            if self.arming != Some(now) {
                self.arming = Some(now);
                if now == Arming::Armed {
                    tracing::info!("admission guard armed: git and the policy are known");
                    self.reporter.admission_guard_state(GuardState::Armed);
                } else {
                    tracing::info!(waiting = ?now, "admission guard waiting: removing nothing yet");
                    self.reporter.admission_guard_state(GuardState::Waiting);
                }
                if now == Arming::Armed {
                    // Everything seen while waiting is judged now.
                    let all: Vec<_> = self.live.keys().cloned().collect();
                    if let (Some(g), Some(p)) = (&git_now, &policy_now) {
                        self.recreate_deleted(g, &p.chain).await;
                        self.judge_all(all, g, &p.chain).await;
                    }
                    continue;
                }
            }
            let (Arming::Armed, Some(git_now), Some(policy_now)) = (now, git_now, policy_now)
            else {
                continue;
            };
            self.recreate_deleted(&git_now, &policy_now.chain).await;
            self.judge_all(changed, &git_now, &policy_now.chain).await;
        }
    }

    /// Judges `objects` and deletes those neither in git, nor allowed, nor
    /// still in the inventory.
    async fn judge_all(
        &mut self,
        objects: Vec<(usize, String)>,
        git: &GitObjects,
        policy: &AdmissionChainPolicy,
    ) {
        let mut inventory: Option<gitwarden_apply::Inventory> = None;
        for (index, name) in objects {
            let Some(live) = self.live.get(&(index, name.clone())).cloned() else {
                continue;
            };
            let w = self.watched[index].clone();
            match judge(w.kind, &name, git, policy) {
                Verdict::InGit => {
                    self.failed.remove(&(index, name.clone()));
                    self.restore_if_tampered(index, &w, &name, &live, git).await;
                    continue;
                }
                Verdict::Allowed { pattern } => {
                    tracing::debug!(kind = %w.kind, %name, %pattern, "allowed outside git by the policy");
                    self.failed.remove(&(index, name));
                    continue;
                }
                Verdict::NotInGit => {}
            }
            if inventory.is_none() {
                match self.settings.inventory.load().await {
                    Ok((loaded, _)) => inventory = Some(loaded),
                    Err(e) => {
                        tracing::warn!(
                            error = gitwarden_runtime::errors::chain(&e),
                            "cannot read the inventory: not removing admission objects until it can be read"
                        );
                        self.failed.insert((index, name));
                        continue;
                    }
                }
            }
            if inventory
                .as_ref()
                .is_some_and(|inv| inv.entries.contains_key(&key(w.kind, &name)))
            {
                tracing::debug!(kind = %w.kind, %name, "left git but still in the inventory: prune decides");
                continue;
            }
            self.remove(index, &w, &name, &live, git.revision()).await;
        }
    }

    /// Restores an admission object from git that was changed where
    /// server-side apply does not heal (fields or entries someone added).
    async fn restore_if_tampered(
        &mut self,
        index: usize,
        w: &Watched,
        name: &str,
        live: &Live,
        git: &GitObjects,
    ) {
        let object = key(w.kind, name);
        let Some(body) = git.admission_body(&object) else {
            return;
        };
        if body["apiVersion"].as_str() != Some(w.resource.api_version.as_str()) {
            tracing::debug!(kind = %w.kind, %name, "git names another version: comparing skipped");
            return;
        }
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &w.resource);
        let current = match api.get_opt(name).await {
            Ok(Some(current)) if current.metadata.uid.as_deref() == Some(live.uid.as_str()) => {
                current
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(kind = %w.kind, %name, error = %e, "cannot read an admission object from git to compare it; retrying");
                self.failed.insert((index, name.to_owned()));
                return;
            }
        };
        let Ok(current) = serde_json::to_value(&current) else {
            return;
        };
        let Some(defaulted) = self.defaulted(&api, &object, &body).await else {
            return;
        };
        if !admission_object::tampered(&defaulted, &current) {
            return;
        }
        let restored = admission_object::restored(&body, &current);
        let Ok(restored) = serde_json::from_value::<DynamicObject>(restored) else {
            return;
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match api.replace(name, &params, &restored).await {
            Ok(_) => {
                self.record_put_back(PutBack::Restored, w, name, git.revision())
                    .await
            }
            // Changed again meanwhile: the watch brings that version.
            Err(kube::Error::Api(status)) if status.code == 409 || status.is_not_found() => {}
            Err(e) => {
                tracing::warn!(kind = %w.kind, %name, error = %e, "could not restore an admission object from git; retrying");
                self.failed.insert((index, name.to_owned()));
            }
        }
    }

    /// Git's body as the API server defaults it (a dry-run create under a
    /// generated name), cached per body.
    async fn defaulted(
        &mut self,
        api: &Api<DynamicObject>,
        object: &gitwarden_manifests::ObjectRef,
        body: &Arc<serde_json::Value>,
    ) -> Option<serde_json::Value> {
        if let Some((cached_body, defaulted)) = self.defaulted.get(object)
            && Arc::ptr_eq(cached_body, body)
        {
            return Some(defaulted.clone());
        }
        let mut probe = (**body).clone();
        probe["metadata"] = serde_json::json!({"generateName": "gitwarden-defaults-"});
        let probe: DynamicObject = serde_json::from_value(probe).ok()?;
        let params = PostParams {
            dry_run: true,
            field_manager: Some(FIELD_MANAGER.to_owned()),
        };
        match api.create(&params, &probe).await {
            Ok(created) => {
                let defaulted = serde_json::to_value(&created).ok()?;
                self.defaulted
                    .insert(object.clone(), (body.clone(), defaulted.clone()));
                Some(defaulted)
            }
            Err(e) => {
                tracing::warn!(%object, error = %e, "cannot default git's admission object with a dry-run: not compared");
                None
            }
        }
    }

    /// Sends what the agent did to the webhook's audit log, when one is
    /// configured; what became of the record.
    fn audit(
        &self,
        reason: AgentReportReason,
        operation: &str,
        w: &Watched,
        name: &str,
        message: &str,
    ) -> AuditFate {
        match &self.settings.audit {
            Audit::NotAudited => AuditFate::NotAudited,
            Audit::Webhook(sink) => match sink.submit(AuditRecord {
                reason,
                message: message.to_owned(),
                operation: operation.to_owned(),
                group: w.resource.group.clone(),
                version: w.resource.version.clone(),
                resource: w.resource.plural.clone(),
                namespace: None,
                name: name.to_owned(),
            }) {
                Submitted::Queued => AuditFate::Queued,
                Submitted::Overflowed => AuditFate::Overflowed,
            },
        }
    }

    /// A put-back's log line, metric, status count, Event and audit record.
    async fn record_put_back(&self, how: PutBack, w: &Watched, name: &str, revision: &str) {
        let message = how.message(w.kind, name, revision);
        let audit = self.audit(how.reason(), how.operation(), w, name, &message);
        tracing::warn!(kind = %w.kind, %name, %revision, ?audit, how = ?how, "put an admission object from git back");
        self.reporter.admission_object_restored(w.kind.kind());
        let regarding = ObjectReference {
            api_version: Some(w.resource.api_version.clone()),
            kind: Some(w.kind.kind().to_owned()),
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let (reason, action) = how.event();
        crate::events::publish(
            &self.recorder,
            &regarding,
            EventType::Warning,
            reason,
            action,
            message,
        )
        .await;
    }

    /// Deletes one object (only this uid) — or, when a delete is already
    /// held up by finalizers someone put on it to keep it in force, removes
    /// those — and records it once.
    async fn remove(&mut self, index: usize, w: &Watched, name: &str, live: &Live, revision: &str) {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &w.resource);
        let uid = live.uid.as_str();
        let done = if live.terminating {
            // The uid in the patch is a precondition: a re-created object
            // under the same name is not touched.
            let patch = serde_json::json!({"metadata": {"uid": uid, "finalizers": null}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        } else {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            api.delete(name, &params).await.map(|_| ())
        };
        match done {
            Ok(()) => {
                self.failed.remove(&(index, name.to_owned()));
                if self.recorded.insert(uid.to_owned()) {
                    self.record(w, name, uid, revision).await;
                }
            }
            Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {
                // Gone already, or re-created under a new uid: the watch
                // brings the new object, which is judged on its own.
                self.failed.remove(&(index, name.to_owned()));
            }
            Err(e) => {
                tracing::warn!(kind = %w.kind, %name, error = %e, "could not delete an admission object that is not in git; retrying");
                self.failed.insert((index, name.to_owned()));
            }
        }
    }

    /// A removal's log line, metric, status entry, Event and audit record.
    async fn record(&self, w: &Watched, name: &str, uid: &str, revision: &str) {
        let message = format!(
            "{} {name:?} was not in git (revision {revision}) and not allowed by the policy's admissionChain.allow; deleted by the gitwarden agent",
            w.kind
        );
        let audit = self.audit(
            AgentReportReason::AdmissionObjectNotInGit,
            "DELETE",
            w,
            name,
            &message,
        );
        tracing::warn!(kind = %w.kind, %name, %uid, %revision, ?audit,
            "removed an admission object that is not in git");
        self.reporter.admission_object_removed(Removal {
            kind: w.kind.kind().to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            at: jiff::Timestamp::now().to_string(),
            audit,
        });
        let regarding = ObjectReference {
            api_version: Some(w.resource.api_version.clone()),
            kind: Some(w.kind.kind().to_owned()),
            name: Some(name.to_owned()),
            uid: Some(uid.to_owned()),
            ..Default::default()
        };
        crate::events::publish(
            &self.recorder,
            &regarding,
            EventType::Warning,
            "AdmissionObjectRemoved",
            "Delete",
            message,
        )
        .await;
    }
}
