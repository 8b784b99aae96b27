//! `kubectl gitwarden`: gitwarden from a workstation, with the user's own
//! kubeconfig and RBAC.
//!
//! - `why KIND/NAME`: managed by gitwarden or not, the file and commit it
//!   comes from, an open break-glass window, the last denials for it;
//! - `break-glass KIND/NAME --reason R [--ttl 30m]`: opens a window in one
//!   request, exactly as the webhook expects it, and shows it;
//! - `audit`: the webhook's audit log, filtered;
//! - `status`: the agent's status.
//!
//! Installed as `kubectl-gitwarden` on `PATH` (krew: `krew/gitwarden.yaml`),
//! kubectl runs it for `kubectl gitwarden …`.

mod connect;
mod resolve;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gitwarden_shared::names;
use gitwarden_shared::source::{INVENTORY_LABEL, ObjectKey, SourceRef, shard_sources};
use gitwarden_shared::stamps::Stamps;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::connect::{Connection, Direct, Endpoint, Kube};
use crate::table::{or_dash, render};

/// gitwarden from kubectl: why an object is as it is, break-glass in one
/// step, the audit log and the agent's status.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-gitwarden",
    bin_name = "kubectl gitwarden",
    version,
    about
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Debug, Args)]
struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, default_value = "table")]
    output: Output,
    /// A bearer token for gitwarden's endpoints instead of the kubeconfig's.
    #[arg(long, global = true, env = "GITWARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The webhook's URL (default: through the API server's service proxy).
    #[arg(long, global = true, env = "GITWARDEN_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The CA (PEM) of the webhook's serving certificate, with --webhook-url.
    #[arg(long, global = true, env = "GITWARDEN_WEBHOOK_CA")]
    webhook_ca: Option<PathBuf>,
    /// The agent's URL (default: through the API server's service proxy).
    #[arg(long, global = true, env = "GITWARDEN_AGENT_URL")]
    agent_url: Option<String>,
    /// The CA (PEM) of the agent's certificate, for an https --agent-url.
    #[arg(long, global = true, env = "GITWARDEN_AGENT_CA")]
    agent_ca: Option<PathBuf>,
    /// gitwarden's namespace.
    #[arg(long, global = true, default_value = names::SYSTEM_NAMESPACE)]
    system_namespace: String,
    /// The namespace of the agent's inventory, where it records which file
    /// and line each object comes from (default: gitwarden's namespace).
    #[arg(long, global = true)]
    inventory_namespace: Option<String>,
    /// The webhook's Service, as the service proxy names it (SCHEME:NAME:PORT).
    #[arg(long, global = true, default_value = "https:gitwarden-webhook:443")]
    webhook_service: String,
    /// The agent's Service, as the service proxy names it.
    #[arg(long, global = true, default_value = "http:gitwarden-agent:80")]
    agent_service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned text for people.
    Table,
    /// JSON for programs.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Why an object is as it is: managed by gitwarden or not, the file and
    /// commit it comes from, an open break-glass window, its last denials.
    Why {
        /// KIND/NAME, e.g. configmap/settings, deployment.apps/web.
        target: String,
        /// How many denials to show.
        #[arg(long, default_value_t = 5)]
        denials: usize,
    },
    /// Opens a break-glass window on an object in one request: the reason
    /// and the window annotated exactly as the webhook expects; shows the
    /// window the webhook stamped.
    BreakGlass {
        /// KIND/NAME.
        target: String,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
        /// The window (whole h/m/s, largest unit first: 30m, 1h30m); default:
        /// the policy's, at most its cap.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// The webhook's audit log, newest first.
    Audit {
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this decision: denied, break-glass or removed.
        #[arg(long)]
        decision: Option<String>,
        /// Only records this recent (a duration such as 1h) or since this
        /// time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// All namespaces (default: -n when given, else every namespace).
        #[arg(long, short = 'A')]
        all_namespaces: bool,
    },
    /// The agent's status: revision, last sync, errors, leader election.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

struct Ctx {
    global: Global,
    kube: Kube,
    connection: Connection,
}

impl Ctx {
    fn namespace(&self) -> String {
        self.global
            .namespace
            .clone()
            .unwrap_or_else(|| self.kube.default_namespace.clone())
    }

    async fn endpoint(&self, agent: bool) -> Result<Endpoint> {
        let token = self
            .kube
            .bearer_token(self.connection.token.as_deref())
            .await?;
        let (name, direct, service) = if agent {
            (
                "agent",
                &self.connection.agent,
                &self.connection.agent_service,
            )
        } else {
            (
                "webhook",
                &self.connection.webhook,
                &self.connection.webhook_service,
            )
        };
        Endpoint::new(
            name,
            direct,
            &self.kube,
            &self.connection.system_namespace,
            service,
            token,
        )
    }
}

async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    let connection = Connection {
        kubeconfig: g.kubeconfig.clone(),
        context: g.context.clone(),
        token: g.token.clone(),
        system_namespace: g.system_namespace.clone(),
        webhook: Direct {
            url: g.webhook_url.clone(),
            ca: g.webhook_ca.clone(),
        },
        agent: Direct {
            url: g.agent_url.clone(),
            ca: g.agent_ca.clone(),
        },
        webhook_service: g.webhook_service.clone(),
        agent_service: g.agent_service.clone(),
    };
    let kube = connection.kube().await?;
    let ctx = Ctx {
        global: cli.global,
        kube,
        connection,
    };
    let output = ctx.global.output;
    let printed = match cli.command {
        Command::Status => status(&ctx, output).await?,
        Command::Audit {
            user,
            decision,
            since,
            limit,
            all_namespaces,
        } => {
            let namespace = (!all_namespaces)
                .then(|| ctx.global.namespace.clone())
                .flatten();
            let query = AuditFilter {
                user,
                namespace,
                decision,
                since: since
                    .map(|s| parse_since(&s, jiff::Timestamp::now()))
                    .transpose()?,
                limit,
                object: None,
            };
            audit(&ctx, &query, output).await?
        }
        Command::Why { target, denials } => why(&ctx, &target, denials, output).await?,
        Command::BreakGlass {
            target,
            reason,
            ttl,
        } => break_glass(&ctx, &target, &reason, ttl.as_deref(), output).await?,
    };
    print!("{printed}");
    Ok(())
}

fn to_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

// ---- status ----------------------------------------------------------------

async fn status(ctx: &Ctx, output: Output) -> Result<String> {
    let (value, headers) = ctx.endpoint(true).await?.fetch_json("/status").await?;
    if let Some(line) = answered_by(&headers) {
        eprintln!("{line}");
    }
    Ok(match output {
        Output::Json => to_json(&value),
        Output::Table => status_table(&value)?,
    })
}

/// Who answered the agent's /status, from its headers, for stderr: any
/// replica behind the Service answers, and a standby asks the leader (see
/// `gitwarden_agent::leader_status`). `None` when the replica answered for
/// itself as the leader (or an older agent, without the headers, answered).
fn answered_by(headers: &http::HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let by = text(names::STATUS_ANSWERED_BY_HEADER);
    if let Some(why) = text(names::STATUS_LEADER_UNREACHABLE_HEADER) {
        return Some(format!(
            "warning: the agent replica {} is a standby and shows its own status (no revision, no last sync): the leader could not be reached: {why}",
            by.unwrap_or("that answered")
        ));
    }
    match (by, text(names::STATUS_FORWARDED_BY_HEADER)) {
        (Some(by), Some(through)) => {
            Some(format!("answered by the leader {by} (through {through})"))
        }
        _ => None,
    }
}

fn status_table(value: &Value) -> Result<String> {
    let s: gitwarden_agent::status::Status = serde_json::from_value(value.clone())
        .context("reading the agent's /status (a different version? try -o json)")?;
    let leader = &value["leaderElection"];
    let leader = match leader["state"].as_str() {
        Some("stuck") => format!("STUCK: {}", leader["message"].as_str().unwrap_or("")),
        Some("waiting") => format!(
            "waiting for {}",
            leader["holder"]["identity"].as_str().unwrap_or("?")
        ),
        Some(state) => state.to_owned(),
        None => "-".to_owned(),
    };
    let rows: Vec<Vec<String>> = [
        ("ROLE", s.role.to_string()),
        ("SOURCE", s.source.clone()),
        ("REVISION", or_dash(s.revision.as_deref())),
        ("SIGNED BY", or_dash(s.verified_signer.as_deref())),
        ("LAST ATTEMPT", or_dash(s.last_attempt.as_deref())),
        ("LAST SUCCESS", or_dash(s.last_success.as_deref())),
        ("ERROR", or_dash(s.error.as_deref())),
        ("DRIFT HEALED", s.drift_healed.to_string()),
        (
            "BREAK-GLASS",
            format!(
                "{} reverted, {} deleted",
                s.break_glass_reverted, s.break_glass_deleted
            ),
        ),
        (
            "ADMISSION CHAIN",
            format!(
                "{} removed, {} restored, {} refusals",
                s.admission_objects_removed,
                s.admission_objects_restored,
                s.admission_refusals.len()
            ),
        ),
        ("LEADER", leader),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_owned(), v])
    .collect();
    Ok(render(&["FIELD", "VALUE"], &rows))
}

// ---- audit -----------------------------------------------------------------

/// What `audit` asks the webhook for.
#[derive(Debug, Default)]
struct AuditFilter {
    user: Option<String>,
    namespace: Option<String>,
    decision: Option<String>,
    /// One object: group, plural resource and name.
    object: Option<(String, String, String)>,
    since: Option<jiff::Timestamp>,
    limit: usize,
}

impl AuditFilter {
    /// `/audit?…`, each value percent-encoded.
    fn path(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(u) = &self.user {
            pairs.push(("user", u.clone()));
        }
        if let Some(n) = &self.namespace {
            pairs.push(("namespace", n.clone()));
        }
        if let Some(d) = &self.decision {
            pairs.push(("decision", d.clone()));
        }
        if let Some((group, resource, name)) = &self.object {
            pairs.push(("group", group.clone()));
            pairs.push(("resource", resource.clone()));
            pairs.push(("name", name.clone()));
        }
        if let Some(s) = &self.since {
            pairs.push(("since", s.to_string()));
        }
        pairs.push(("limit", self.limit.to_string()));
        let query: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", encode(&v)))
            .collect();
        format!("/audit?{}", query.join("&"))
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `--since`: a duration back from `now` (`1h`, `30m`) or an RFC 3339 time.
fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).with_context(|| {
        format!("--since {s:?} is neither a duration (1h) nor an RFC 3339 time")
    })?;
    let span = jiff::SignedDuration::try_from(d)?;
    Ok(now.checked_sub(span)?)
}

async fn audit_records(ctx: &Ctx, filter: &AuditFilter) -> Result<Vec<Value>> {
    let (value, headers) = ctx
        .endpoint(false)
        .await?
        .fetch_json(&filter.path())
        .await?;
    if let Some(line) = missing_replicas(&headers) {
        eprintln!("{line}");
    }
    match value {
        Value::Array(records) => Ok(records),
        other => bail!("the webhook's /audit answered with no list: {other}"),
    }
}

/// The warning for stderr when the webhook's answer lacks some replicas'
/// records (`x-gitwarden-audit-missing`): each replica keeps its own log, the
/// one that answered asks the others, and one that could not be asked
/// leaves its denials out. `None` when every replica answered (or an older
/// webhook, without the header, answered from its own log).
fn missing_replicas(headers: &http::HeaderMap) -> Option<String> {
    let missing = headers
        .get(names::AUDIT_MISSING_HEADER)?
        .to_str()
        .unwrap_or("(unreadable)");
    Some(format!(
        "warning: the audit log shown lacks the records of webhook replicas that did not answer: {missing}"
    ))
}

async fn audit(ctx: &Ctx, filter: &AuditFilter, output: Output) -> Result<String> {
    let records = audit_records(ctx, filter).await?;
    Ok(match output {
        Output::Json => to_json(&Value::Array(records)),
        Output::Table => audit_table(&records, true),
    })
}

fn record_object(r: &Value) -> String {
    let resource = match (r["resource"].as_str(), r["subresource"].as_str()) {
        (Some(res), Some(sub)) => format!("{res}/{sub}"),
        (Some(res), None) => res.to_owned(),
        _ => "-".to_owned(),
    };
    let group = r["group"].as_str().filter(|g| !g.is_empty());
    let resource = match group {
        Some(g) => format!("{resource}.{g}"),
        None => resource,
    };
    match (r["namespace"].as_str(), r["name"].as_str()) {
        (Some(ns), Some(name)) => format!("{resource} {ns}/{name}"),
        (None, Some(name)) => format!("{resource} {name}"),
        _ => resource,
    }
}

fn audit_table(records: &[Value], with_object: bool) -> String {
    let s = |r: &Value, k: &str| or_dash(r[k].as_str());
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let mut row = vec![
                s(r, "time"),
                s(r, "id"),
                s(r, "decision"),
                s(r, "user"),
                s(r, "operation"),
            ];
            if with_object {
                row.push(record_object(r));
            }
            row.push(match r["breakGlassReason"].as_str() {
                Some(reason) => format!("{} ({reason})", s(r, "reason")),
                None => s(r, "reason"),
            });
            row
        })
        .collect();
    if with_object {
        render(
            &[
                "TIME",
                "ID",
                "DECISION",
                "USER",
                "OPERATION",
                "OBJECT",
                "REASON",
            ],
            &rows,
        )
    } else {
        render(
            &["TIME", "ID", "DECISION", "USER", "OPERATION", "REASON"],
            &rows,
        )
    }
}

// ---- the object ------------------------------------------------------------

struct Resolved {
    api: Api<DynamicObject>,
    resource: kube::discovery::ApiResource,
    namespace: Option<String>,
    name: String,
}

async fn resolve(ctx: &Ctx, target: &str) -> Result<Resolved> {
    let target = resolve::parse_target(target)?;
    let (resource, caps) = resolve::resolve(&ctx.kube.client, &target).await?;
    let client = ctx.kube.client.clone();
    let (api, namespace) = if resolve::namespaced(&caps) {
        let ns = ctx.namespace();
        (Api::namespaced_with(client, &ns, &resource), Some(ns))
    } else {
        (Api::all_with(client, &resource), None)
    };
    Ok(Resolved {
        api,
        resource,
        namespace,
        name: target.name,
    })
}

impl Resolved {
    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.resource.kind, self.name),
            None => format!("{} {}", self.resource.kind, self.name),
        }
    }
}

fn kube_error(e: kube::Error, what: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => anyhow::anyhow!("{what}: {}", status.message),
        other => anyhow::Error::new(other).context(what.to_owned()),
    }
}

/// The break-glass window an object's annotations and label describe.
fn window(
    annotations: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
    now: jiff::Timestamp,
) -> Value {
    let stamps = Stamps::of(annotations);
    let get = |k: &str| annotations.and_then(|a| a.get(k)).cloned();
    let reason = get(names::BREAK_GLASS);
    let until = stamps.until();
    let open =
        reason.as_deref().is_some_and(|r| !r.trim().is_empty()) && until.is_some_and(|u| u > now);
    json!({
        "open": open,
        "reason": reason,
        "ttl": get(names::BREAK_GLASS_TTL),
        "by": stamps.by,
        "at": stamps.at,
        "until": stamps.until,
        "remaining": until.filter(|_| open).map(|u| remaining(u, now)),
        "label": labels.and_then(|l| l.get(names::BREAK_GLASS_LABEL)).cloned(),
    })
}

fn remaining(until: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = until.duration_since(now).as_secs().max(0);
    let d = std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    humantime::format_duration(d).to_string()
}

fn window_line(w: &Value) -> String {
    let s = |k: &str| w[k].as_str().unwrap_or("?").to_owned();
    if w["open"] == true {
        format!(
            "open until {} ({} left), by {}, reason {:?}",
            s("until"),
            s("remaining"),
            s("by"),
            s("reason")
        )
    } else if w["reason"].is_string() || w["until"].is_string() {
        format!(
            "closed (reason {:?}, until {}); the agent reverts the object to git",
            s("reason"),
            s("until")
        )
    } else {
        "none".to_owned()
    }
}

// ---- why -------------------------------------------------------------------

/// Where the agent recorded `key` is written in git: its inventory shards
/// (readable with the user's own RBAC).
async fn source_of(ctx: &Ctx, key: &ObjectKey) -> Result<Option<SourceRef>> {
    let namespace = ctx
        .global
        .inventory_namespace
        .as_deref()
        .unwrap_or(&ctx.global.system_namespace);
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(ctx.kube.client.clone(), namespace);
    let shards = api
        .list(&kube::api::ListParams::default().labels(INVENTORY_LABEL))
        .await
        .map_err(|e| kube_error(e, &format!("listing the inventory in {namespace}")))?;
    Ok(shards
        .items
        .iter()
        .filter_map(|map| map.data.as_ref())
        .flat_map(shard_sources)
        .find(|(found, _)| found == key)
        .map(|(_, source)| source))
}

async fn why(ctx: &Ctx, target: &str, max_denials: usize, output: Output) -> Result<String> {
    let r = resolve(ctx, target).await?;
    let object = r
        .api
        .get(&r.name)
        .await
        .map_err(|e| kube_error(e, &format!("reading {}", r.describe())))?;
    let meta = &object.metadata;
    let by_label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::MANAGED_BY_LABEL))
        .is_some_and(|v| v == names::MANAGED_BY_VALUE);
    let by_field_manager = meta
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(names::FIELD_MANAGER));
    let key = ObjectKey {
        group: r.resource.group.clone(),
        kind: r.resource.kind.clone(),
        namespace: r.namespace.clone().unwrap_or_default(),
        name: r.name.clone(),
    };
    let (source, source_error) = match source_of(ctx, &key).await {
        Ok(source) => (source, None),
        Err(e) => (None, Some(chain(&e))),
    };
    let window = window(
        meta.annotations.as_ref(),
        meta.labels.as_ref(),
        jiff::Timestamp::now(),
    );

    // The commit and the denials are the endpoints'; either may be out of
    // reach (RBAC, network) without hiding what the object itself says.
    let (revision, agent_error) = match ctx.endpoint(true).await {
        Ok(agent) => match agent.get_json("/status").await {
            Ok(status) => (status["revision"].as_str().map(str::to_owned), None),
            Err(e) => (None, Some(chain(&e))),
        },
        Err(e) => (None, Some(chain(&e))),
    };
    // The webhook filters by object, over the whole log; the same filter
    // here keeps the answer right from a webhook too old to know it.
    let filter = AuditFilter {
        namespace: r.namespace.clone(),
        decision: Some("denied".to_owned()),
        object: Some((
            r.resource.group.clone(),
            r.resource.plural.clone(),
            r.name.clone(),
        )),
        limit: 1000,
        ..AuditFilter::default()
    };
    let (denials, audit_error) = match audit_records(ctx, &filter).await {
        Ok(records) => (
            records
                .into_iter()
                .filter(|rec| {
                    rec["name"].as_str() == Some(r.name.as_str())
                        && rec["resource"].as_str() == Some(r.resource.plural.as_str())
                        && rec["group"].as_str().unwrap_or("") == r.resource.group
                })
                .take(max_denials)
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(chain(&e))),
    };

    let doc = json!({
        "object": {
            "apiVersion": r.resource.api_version,
            "kind": r.resource.kind,
            "namespace": r.namespace,
            "name": r.name,
        },
        "managed": by_label || by_field_manager,
        "managedBy": { "label": by_label, "fieldManager": by_field_manager },
        "source": source,
        "revision": revision,
        "breakGlass": window,
        "denials": denials,
        "errors": { "agent": agent_error, "audit": audit_error, "source": source_error },
    });
    if output == Output::Json {
        return Ok(to_json(&doc));
    }
    let managed = match (by_label, by_field_manager) {
        (true, true) => format!(
            "yes (label {}={}, field manager {})",
            names::MANAGED_BY_LABEL,
            names::MANAGED_BY_VALUE,
            names::FIELD_MANAGER
        ),
        (true, false) => format!(
            "yes (label {}={})",
            names::MANAGED_BY_LABEL,
            names::MANAGED_BY_VALUE
        ),
        (false, true) => format!("yes (field manager {})", names::FIELD_MANAGER),
        (false, false) => "no: not applied by gitwarden (changes may still be refused if its namespace is protected)".to_owned(),
    };
    let source_line = match (&source, &source_error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => format!("unknown: cannot read the agent's inventory: {e}"),
        (None, None) if by_label || by_field_manager => {
            "unknown (not in the agent's inventory)".to_owned()
        }
        (None, None) => "-".to_owned(),
    };
    let commit_line = match (&revision, &agent_error) {
        (Some(rev), _) => format!("{rev} (the agent's applied revision)"),
        (None, Some(e)) => format!("unknown: {e}"),
        (None, None) => "unknown (the agent has applied no revision yet)".to_owned(),
    };
    let rows = vec![
        vec!["OBJECT".to_owned(), r.describe()],
        vec!["MANAGED".to_owned(), managed],
        vec!["SOURCE".to_owned(), source_line],
        vec!["COMMIT".to_owned(), commit_line],
        vec!["BREAK-GLASS".to_owned(), window_line(&doc["breakGlass"])],
    ];
    let mut out = render(&["FIELD", "VALUE"], &rows);
    out.push('\n');
    match audit_error {
        Some(e) => out.push_str(&format!("LAST DENIALS: unknown: {e}\n")),
        None if denials.is_empty() => out.push_str("LAST DENIALS: none\n"),
        None => {
            out.push_str("LAST DENIALS\n");
            out.push_str(&audit_table(&denials, false));
        }
    }
    Ok(out)
}

// ---- break-glass -----------------------------------------------------------

/// The one request that opens a window: the reason and, when asked, the
/// window, as annotations; the mutating webhook adds the stamps.
fn break_glass_patch(reason: &str, ttl: Option<&str>) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert(names::BREAK_GLASS.to_owned(), json!(reason));
    if let Some(ttl) = ttl {
        annotations.insert(names::BREAK_GLASS_TTL.to_owned(), json!(ttl));
    }
    json!({ "metadata": { "annotations": annotations } })
}

async fn break_glass(
    ctx: &Ctx,
    target: &str,
    reason: &str,
    ttl: Option<&str>,
    output: Output,
) -> Result<String> {
    if reason.trim().is_empty() {
        bail!("--reason must say why (it is recorded in the audit log)");
    }
    if let Some(ttl) = ttl {
        humantime::parse_duration(ttl)
            .with_context(|| format!("--ttl {ttl:?} is not a duration (30m, 1h30m)"))?;
    }
    let r = resolve(ctx, target).await?;
    let patched = r
        .api
        .patch(
            &r.name,
            &PatchParams::default(),
            &Patch::Merge(break_glass_patch(reason, ttl)),
        )
        .await
        .map_err(|e| kube_error(e, &format!("break-glass on {}", r.describe())))?;
    let window = window(
        patched.metadata.annotations.as_ref(),
        patched.metadata.labels.as_ref(),
        jiff::Timestamp::now(),
    );
    if window["until"].is_null() {
        bail!(
            "{} was annotated but no window was stamped: is gitwarden's mutating webhook installed?",
            r.describe()
        );
    }
    if window["reason"].as_str() != Some(reason) {
        bail!(
            "{} carries another reason than asked: {}",
            r.describe(),
            window_line(&window)
        );
    }
    let doc = json!({
        "object": {
            "apiVersion": r.resource.api_version,
            "kind": r.resource.kind,
            "namespace": r.namespace,
            "name": r.name,
        },
        "breakGlass": window,
    });
    Ok(match output {
        Output::Json => to_json(&doc),
        Output::Table => {
            let w = &doc["breakGlass"];
            let s = |k: &str| or_dash(w[k].as_str());
            let rows = vec![
                vec!["OBJECT".to_owned(), r.describe()],
                vec![
                    "WINDOW".to_owned(),
                    if w["open"] == true { "open" } else { "closed" }.to_owned(),
                ],
                vec!["REASON".to_owned(), s("reason")],
                vec!["BY".to_owned(), s("by")],
                vec!["AT".to_owned(), s("at")],
                vec!["UNTIL".to_owned(), s("until")],
                vec!["REMAINING".to_owned(), s("remaining")],
            ];
            let mut out = render(&["FIELD", "VALUE"], &rows);
            out.push_str(
                "Make the change now (members of the break-glass groups, same reason); put the fix into git: \
                 when the window closes the agent reverts the object to git.\n",
            );
            out
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_gitwarden_help_names_every_command() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for word in ["why", "break-glass", "audit", "status", "kubectl gitwarden"] {
            assert!(help.contains(word), "{word} missing:\n{help}");
        }
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("1h", now).unwrap().to_string(),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            parse_since("2025-12-31T00:00:00Z", now)
                .unwrap()
                .to_string(),
            "2025-12-31T00:00:00Z"
        );
        assert!(parse_since("yesterday", now).is_err());
    }

    #[test]
    fn the_audit_query_is_encoded() {
        let f = AuditFilter {
            user: Some("system:serviceaccount:a:b".into()),
            decision: Some("break-glass".into()),
            limit: 5,
            ..AuditFilter::default()
        };
        assert_eq!(
            f.path(),
            "/audit?user=system%3Aserviceaccount%3Aa%3Ab&decision=break-glass&limit=5"
        );
        let one = AuditFilter {
            object: Some(("".into(), "configmaps".into(), "web".into())),
            limit: 5,
            ..AuditFilter::default()
        };
        assert_eq!(
            one.path(),
            "/audit?group=&resource=configmaps&name=web&limit=5"
        );
    }

    #[test]
    fn the_patch_sets_exactly_the_annotations_the_webhook_reads() {
        let p = break_glass_patch("INC-1 down", Some("30m"));
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {
                "gitwarden.io/break-glass": "INC-1 down",
                "gitwarden.io/break-glass-ttl": "30m"}}})
        );
        let p = break_glass_patch("x", None);
        assert_eq!(p["metadata"]["annotations"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn a_window_is_open_only_with_a_reason_before_until() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let ann: BTreeMap<String, String> = [
            (names::BREAK_GLASS, "INC-7"),
            (names::BREAK_GLASS_BY, "carol"),
            (names::BREAK_GLASS_AT, "2026-01-01T11:50:00Z"),
            (names::BREAK_GLASS_UNTIL, "2026-01-01T12:20:00Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let w = window(Some(&ann), None, now);
        assert_eq!(w["open"], true);
        assert_eq!(w["remaining"], "20m");
        assert!(window_line(&w).contains("by carol"));
        let later: jiff::Timestamp = "2026-01-01T13:00:00Z".parse().unwrap();
        let w = window(Some(&ann), None, later);
        assert_eq!(w["open"], false);
        assert!(window_line(&w).starts_with("closed"));
        assert_eq!(window_line(&window(None, None, now)), "none");
    }

    #[test]
    fn audit_rows_name_the_object() {
        let r = json!({"time": "t", "id": "1-a", "decision": "denied", "user": "alice",
            "operation": "UPDATE", "group": "apps", "resource": "deployments",
            "subresource": "scale", "namespace": "demo", "name": "web", "reason": "not_from_git"});
        let out = audit_table(&[r], true);
        assert!(out.contains("deployments/scale.apps demo/web"), "{out}");
        assert!(out.starts_with("TIME"), "{out}");
    }

    #[test]
    fn missing_replicas_are_a_warning() {
        let mut h = http::HeaderMap::new();
        assert_eq!(missing_replicas(&h), None);
        h.insert(
            names::AUDIT_MISSING_HEADER,
            http::HeaderValue::from_static(
                "gitwarden-webhook-1: did not answer within 5s at 10.0.0.11:8443",
            ),
        );
        let line = missing_replicas(&h).unwrap();
        assert!(line.starts_with("warning: "), "{line}");
        assert!(
            line.ends_with("gitwarden-webhook-1: did not answer within 5s at 10.0.0.11:8443"),
            "{line}"
        );
    }

    #[test]
    fn status_says_which_replica_answered() {
        let mut h = http::HeaderMap::new();
        assert_eq!(answered_by(&h), None);
        h.insert(
            names::STATUS_ANSWERED_BY_HEADER,
            http::HeaderValue::from_static("agent-a"),
        );
        assert_eq!(answered_by(&h), None, "the leader answered for itself");
        h.insert(
            names::STATUS_FORWARDED_BY_HEADER,
            http::HeaderValue::from_static("agent-b"),
        );
        assert_eq!(
            answered_by(&h).unwrap(),
            "answered by the leader agent-a (through agent-b)"
        );
        h.remove(names::STATUS_FORWARDED_BY_HEADER);
        h.insert(
            names::STATUS_LEADER_UNREACHABLE_HEADER,
            http::HeaderValue::from_static("the leader's pod gitwarden-system/x does not exist"),
        );
        let line = answered_by(&h).unwrap();
        assert!(line.starts_with("warning: "), "{line}");
        assert!(line.contains("agent-a is a standby"), "{line}");
        assert!(
            line.contains("the leader could not be reached: the leader's pod"),
            "{line}"
        );
    }
}
