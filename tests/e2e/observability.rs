//! The observability bundle (deploy/observability) against the real thing:
//! `promtool check rules` and `promtool test rules` on the alert rules, the
//! PrometheusRule generated from the one rules file, and every metric and
//! label the rules and the dashboard use checked against the /metrics of a
//! real agent (syncing and healing drift in the test cluster) and a real
//! webhook (deciding real AdmissionReviews). The last test also renders the
//! dashboard: each panel query evaluated by promtool (Prometheus' own PromQL
//! engine) over two real scrapes. `GITWARDEN_BLESS=1` rewrites
//! prometheusrule.yaml.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitwarden_tests::admission_review::{AdmissionReview, managed_deployment};
use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::git::git;
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use gitwarden_tests::tools::tool;
use gitwarden_tests::webhook::apply;
use gitwarden_tests::{Identity, TestCluster, testdata, wait_for};

const RULES: &str = "deploy/observability/rules.yaml";
const PROMETHEUS_RULE: &str = "deploy/observability/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/observability/dashboard.json";
const UNIT_TESTS: &str = "deploy/observability/tests";
const AGENT_JOB: &str = "gitwarden-system/gitwarden-agent";
const WEBHOOK_JOB: &str = "gitwarden-system/gitwarden-webhook";
/// Families the agent declares only once their event happened (an empty
/// labelled family is not exposed): the admission-chain guard's, which this
/// test does not provoke (a guarding agent removes other tests' admission
/// objects). For these the check falls back to the registration in the
/// source: (metric, file, registered name, its label names).
const ONLY_AFTER_EVENTS: [(&str, &str, &str, &[&str]); 3] = [
    (
        "gitwarden_agent_admission_objects_removed_total",
        "agent/src/reporter.rs",
        "\"admission_objects_removed\"",
        &["kind"],
    ),
    (
        "gitwarden_agent_admission_objects_restored_total",
        "agent/src/reporter.rs",
        "\"admission_objects_restored\"",
        &["kind"],
    ),
    (
        "gitwarden_agent_admission_refused_total",
        "agent/src/reporter.rs",
        "\"admission_refused\"",
        &["plugin_kind", "plugin"],
    ),
];

/// Labels Prometheus adds to every scraped series (PodMonitor target labels).
const TARGET_LABELS: [&str; 5] = ["job", "instance", "namespace", "pod", "container"];

const PROMETHEUS_RULE_HEADER: &str = "\
# GENERATED from rules.yaml (the one source of gitwarden's alert rules; read
# the comments there): GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test
# e2e observability rewrites it.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: gitwarden
  namespace: gitwarden-system
  labels:
    app.kubernetes.io/name: gitwarden
spec:
";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool() -> PathBuf {
    tool("promtool").unwrap()
}

/// Runs promtool; (success, stdout + stderr).
fn run_promtool(args: &[&str], dir: &Path, stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rendered_prometheus_rule() -> String {
    let rules = read(RULES);
    let start = rules.find("\ngroups:").expect("rules.yaml has groups:") + 1;
    let body: String = rules[start..]
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    format!("{PROMETHEUS_RULE_HEADER}{body}")
}

#[test]
fn the_prometheus_rule_is_generated_from_the_rules_file() {
    let want = rendered_prometheus_rule();
    let path = repo_root().join(PROMETHEUS_RULE);
    if std::env::var_os("GITWARDEN_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{PROMETHEUS_RULE} differs from what {RULES} renders; \
         GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test e2e observability"
    );
    // The same rules, structurally.
    let rule: serde_yaml_ng::Value = serde_yaml_ng::from_str(&have).unwrap();
    let plain: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(RULES)).unwrap();
    assert_eq!(rule["spec"], plain);
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let root = repo_root();
    let (ok, out) = run_promtool(&["check", "rules", RULES], &root, None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run_promtool(&["check", "rules", PROMETHEUS_RULE], &root, None);
    assert!(!ok, "a PrometheusRule is no plain rules file:\n{out}");
    let mut files: Vec<String> = std::fs::read_dir(root.join(UNIT_TESTS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let (ok, out) = run_promtool(&args, &root.join(UNIT_TESTS), None);
    assert!(ok, "promtool test rules:\n{out}");
    // Every alert of the rules has a firing case and a silent case.
    let tests: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&format!("{UNIT_TESTS}/{}", files[0]))).unwrap();
    let (mut firing, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for t in tests["tests"].as_sequence().unwrap() {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = a["alertname"].as_str().unwrap().to_owned();
            if a["exp_alerts"].as_sequence().is_some_and(|s| s.is_empty()) {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let alerts = alert_names();
    assert_eq!(alerts.len(), 11, "{alerts:?}");
    assert_eq!(firing, alerts, "alerts without a firing unit test");
    assert_eq!(silent, alerts, "alerts without a silent unit test");
}

fn alert_names() -> BTreeSet<String> {
    rule_exprs()
        .into_iter()
        .filter_map(|(name, _)| name)
        .collect()
}

/// (alert name, expression) of every rule.
fn rule_exprs() -> Vec<(Option<String>, String)> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(RULES)).unwrap();
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            out.push((
                rule["alert"].as_str().map(str::to_owned),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// (panel title, legend, expression) of every dashboard query.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let dash: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["legendFormat"].as_str().unwrap_or("").to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// PromQL identifiers of an expression, outside strings.
fn identifiers(expr: &str) -> Vec<(String, Option<char>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:$".contains(chars[i]))
            {
                i += 1;
            }
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            out.push((chars[start..i].iter().collect(), next));
        } else {
            i += 1;
        }
    }
    out
}

/// Metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    identifiers(expr)
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| id.starts_with("gitwarden_") || id == "up")
        .collect()
}

/// Label names an expression matches or groups by.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ids = identifiers(expr);
    let mut in_group = false;
    for (id, next) in &ids {
        if in_group {
            out.insert(id.clone());
            if *next == Some(')') {
                in_group = false;
            }
            continue;
        }
        if ["by", "without", "on", "ignoring"].contains(&id.as_str()) {
            in_group = *next == Some('(');
        }
    }
    // Selector keys: `name="…"` etc. inside braces.
    let mut depth = 0;
    let mut key = String::new();
    for c in expr.chars() {
        match c {
            '{' => {
                depth = 1;
                key.clear();
            }
            '}' => depth = 0,
            '=' | '!' | '~' if depth == 1 && !key.is_empty() => {
                out.insert(key.trim().to_owned());
                key.clear();
                depth = 2;
            }
            '"' if depth == 2 => depth = 3,
            '"' if depth == 3 => depth = 4,
            ',' if depth == 4 => depth = 1,
            c if depth == 1 && (c.is_ascii_alphanumeric() || c == '_') => key.push(c),
            _ => {}
        }
    }
    out
}

/// One scraped series: name, labels, value.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

/// The exposition of one binary: its samples, and every name its TYPE
/// lines promise (a family with no child yet still declares itself).
struct Exposition {
    samples: Vec<Sample>,
    names: BTreeSet<String>,
}

fn parse_exposition(text: &str) -> Exposition {
    let mut samples = Vec::new();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels = BTreeMap::new();
                let body = rest.strip_suffix('}').unwrap();
                for pair in split_labels(body) {
                    let (k, v) = pair.split_once('=').unwrap();
                    labels.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        names.insert(name.clone());
        samples.push(Sample {
            name,
            labels,
            value: value.to_owned(),
        });
    }
    Exposition { samples, names }
}

fn split_labels(body: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in body.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                cur.push(c);
                quoted = !quoted;
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The agent's namespace, RBAC (deploy/base/rbac-agent.yaml) and a real token.
async fn agent_kubeconfig(cluster: &'static TestCluster) -> PathBuf {
    let admin = cluster.kubeconfig(Identity::Admin);
    let namespace = testdata::rendered("namespace.yaml", &[("NAME", "gitwarden-system")]).unwrap();
    apply(&admin, &namespace).unwrap();
    apply(&admin, &read("deploy/base/rbac-agent.yaml")).unwrap();
    cluster
        .mint_service_account_token("gitwarden-system", "gitwarden-agent")
        .await
        .unwrap()
        .1
}

/// A `gitwarden-agent run` process, killed when dropped.
struct Agent {
    child: std::process::Child,
    url: String,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

async fn agent_status(url: &str) -> Option<serde_json::Value> {
    reqwest::get(format!("{url}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

async fn scrape(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sends one AdmissionReview to the webhook's /validate; whether it was allowed.
async fn review(webhook: &LoopbackWebhook, review: &AdmissionReview) -> bool {
    let body: serde_json::Value = webhook
        .http()
        .post(format!("https://127.0.0.1:{}/validate", webhook.port()))
        .json(&review.to_json())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["response"]["allowed"].as_bool().unwrap()
}

/// Some admission traffic: `n` denied writes by a person, `n` allowed dry runs.
async fn admission_traffic(webhook: &LoopbackWebhook, ns: &str, n: usize) {
    for i in 0..n {
        let denied = AdmissionReview::create(managed_deployment(ns, &format!("web-{i}"), 1))
            .uid(format!("deny-{i}"))
            .by("alice", &["developers"]);
        assert!(!review(webhook, &denied).await, "alice's write was allowed");
        let allowed = AdmissionReview::create(managed_deployment(ns, &format!("web-{i}"), 1))
            .uid(format!("allow-{i}"))
            .by("alice", &["developers"])
            .dry_run(true);
        assert!(review(webhook, &allowed).await, "a dry run was denied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_use_only_what_the_running_binaries_export() {
    // A real webhook (built-in policy) and a real agent syncing a real repository.
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "gitSource: https://git.example.com/platform/cluster.git\n",
    )
    .unwrap();
    // A receiver on a closed port: the notifier's families (failures, the
    // configuration gauge) are exported as a real failing receiver has them.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notifications = policy_dir.path().join("notifications.yaml");
    std::fs::write(
        &notifications,
        format!("receivers:\n- name: chat\n  type: webhook\n  url: http://127.0.0.1:{closed_port}/hook\n"),
    )
    .unwrap();
    let webhook = LoopbackWebhook::launch(PolicySource::File(&policy))
        .args([
            "--notifications-config".into(),
            notifications.clone().into_os_string(),
        ])
        .start()
        .await
        .unwrap();
    let cluster = TestCluster::shared();
    let kubeconfig = agent_kubeconfig(cluster).await;
    let ns = cluster.namespace("observe").await.unwrap();
    let ns = ns.name().to_owned();
    let repo = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.path().join("app.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {ns}\n\
             data:\n  color: blue\n"
        ),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "settings"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = cache.path().join("agent.log");
    let agent = Agent {
        child: Command::new(gitwarden_tests::binaries::binary("gitwarden-agent").unwrap())
            .arg("run")
            .arg("--repo")
            .arg(format!("file://{}", repo.path().display()))
            .arg("--cache-dir")
            .arg(cache.path().join("cache"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--inventory-namespace", &ns, "--default-namespace", &ns])
            .args(["--lease-namespace", &ns, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--interval", "1h", "--drift-debounce", "200ms"])
            .args(["--health-timeout", "1s", "--admission-guard=false"])
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let synced = wait_for(Duration::from_secs(60), || async {
        agent_status(&agent.url)
            .await
            .filter(|s| s["lastSuccess"].is_string())
    })
    .await;
    assert!(synced.is_some(), "the agent never synced");
    admission_traffic(&webhook, &ns, 3).await;

    // First scrape, then a workload, then the second scrape.
    let t0 = Instant::now();
    let agent_1 = scrape(&agent.url).await;
    let webhook_1 = webhook.metrics().await.unwrap();
    cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                &ns,
                "patch",
                "configmap",
                "settings",
                "-p",
                r#"{"data":{"color":"red"}}"#,
            ],
        )
        .expect_success();
    let healed = wait_for(Duration::from_secs(30), || async {
        agent_status(&agent.url)
            .await
            .filter(|s| s["driftHealed"].as_u64().unwrap_or(0) > 0)
    })
    .await;
    assert!(healed.is_some(), "the drift was not healed");
    admission_traffic(&webhook, &ns, 10).await;
    let bad = webhook
        .http()
        .post(format!("https://127.0.0.1:{}/validate", webhook.port()))
        .header("content-type", "application/json")
        .body("not an AdmissionReview")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    webhook.rotate_certificate().unwrap();
    let reloaded = wait_for(Duration::from_secs(20), || async {
        webhook
            .metrics()
            .await
            .ok()
            .filter(|m| m.contains("gitwarden_webhook_tls_reloads_total{result=\"ok\"}"))
    })
    .await;
    assert!(reloaded.is_some(), "the certificate was not reloaded");
    // A window of at least 10 s between the scrapes for the rates.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed())).await;
    let agent_2 = scrape(&agent.url).await;
    let webhook_2 = webhook.metrics().await.unwrap();
    let elapsed = t0.elapsed().as_secs().max(1);
    let now = jiff::Timestamp::now().as_second();

    let agent_exp = parse_exposition(&agent_2);
    let webhook_exp = parse_exposition(&webhook_2);
    let mut names: BTreeSet<String> = agent_exp.names.union(&webhook_exp.names).cloned().collect();
    names.insert("up".to_owned());
    let samples: Vec<&Sample> = agent_exp
        .samples
        .iter()
        .chain(&webhook_exp.samples)
        .collect();
    // Events the rules and panels count did happen, with their labels.
    for want in [
        "gitwarden_agent_objects_total{action=",
        "gitwarden_agent_revision_info{revision=",
        "gitwarden_agent_drift_healed_total 1",
    ] {
        assert!(agent_2.contains(want), "{want} not in:\n{agent_2}");
    }
    for want in [
        "gitwarden_webhook_requests_total{endpoint=\"validate\",decision=\"deny\",reason=",
        "gitwarden_webhook_requests_total{endpoint=\"validate\",decision=\"allow\",reason=",
        "gitwarden_webhook_request_duration_seconds_bucket{",
        "gitwarden_webhook_certificate_not_after_seconds ",
    ] {
        assert!(webhook_2.contains(want), "{want} not in:\n{webhook_2}");
    }

    // Every metric and label name of the rules and the dashboard is real.
    let mut exprs: Vec<(String, String)> = rule_exprs()
        .into_iter()
        .map(|(name, expr)| (format!("rule {}", name.unwrap_or_default()), expr))
        .collect();
    exprs.extend(
        dashboard_queries()
            .into_iter()
            .map(|(title, _, expr)| (format!("panel {title:?}"), expr)),
    );
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let mut from_source = BTreeSet::new();
    for (what, expr) in &exprs {
        let metrics = metric_names(expr);
        assert!(!metrics.is_empty(), "{what} reads no metric: {expr}");
        let mut declared_labels: BTreeSet<&str> = BTreeSet::new();
        for m in &metrics {
            used.insert(m.clone());
            if names.contains(m) {
                continue;
            }
            match ONLY_AFTER_EVENTS.iter().find(|(name, ..)| name == m) {
                Some((_, file, registered, labels))
                    if read(file).contains(registered)
                        && read(file).contains("sub_registry_with_prefix(\"gitwarden_agent\")") =>
                {
                    from_source.insert(m.clone());
                    declared_labels.extend(labels.iter());
                }
                _ => problems.push(format!("{what}: no metric {m} in /metrics")),
            }
        }
        for label in label_names(expr) {
            let real = TARGET_LABELS.contains(&label.as_str())
                || declared_labels.contains(label.as_str())
                || samples
                    .iter()
                    .any(|s| metrics.contains(&s.name) && s.labels.contains_key(&label));
            if !real {
                problems.push(format!(
                    "{what}: no series of {metrics:?} has label {label}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!(
        "{} metric names used by the rules and the dashboard: {used:?}\n\
         all in the real /metrics but {from_source:?} (registered in the source, no event provoked)",
        used.len()
    );

    // promtool lints what the binaries expose.
    for (who, text) in [("agent", &agent_2), ("webhook", &webhook_2)] {
        let (ok, out) = run_promtool(&["check", "metrics"], &repo_root(), Some(text));
        eprintln!("promtool check metrics ({who}): ok={ok}\n{out}");
        // The one finding is an artefact: prometheus-client writes
        // OpenMetrics, whose HELP names a counter's family (`x`) while its
        // sample is `x_total`; promtool's linter reads the 0.0.4 text
        // format and misses the help. Anything else fails.
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let counter_help = line.strip_suffix(" no help text").is_some_and(|name| {
                name.ends_with("_total")
                    && text.contains(&format!("# HELP {} ", name.trim_end_matches("_total")))
            });
            assert!(
                counter_help,
                "promtool check metrics ({who}): {line}\n{out}"
            );
        }
    }

    // The dashboard rendered: every panel query evaluated by promtool over
    // the two real scrapes.
    let rendering = render_dashboard(
        [
            (AGENT_JOB, &agent_1, &agent_2),
            (WEBHOOK_JOB, &webhook_1, &webhook_2),
        ],
        elapsed,
        now,
    );
    eprintln!("{rendering}");
    let out = repo_root().join("target/observability-dashboard.txt");
    let _ = std::fs::write(&out, &rendering);
}

/// Evaluates every dashboard query at the second scrape with promtool's
/// unit-test engine: the two scrapes become input series `elapsed` seconds
/// apart, `$__rate_interval` the window that holds both, `time()` the real
/// time of the second scrape. promtool prints what each query returned
/// (expected: nothing), and that is the panel's value.
fn render_dashboard(scrapes: [(&str, &String, &String); 2], elapsed: u64, now: i64) -> String {
    let mut series: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (job, first, second) in scrapes {
        let instance = if job == AGENT_JOB {
            "gitwarden-agent-0"
        } else {
            "gitwarden-webhook-0"
        };
        let key = |s: &Sample| {
            let mut labels = s.labels.clone();
            labels.insert("job".into(), job.into());
            labels.insert("pod".into(), instance.into());
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            format!("{}{{{}}}", s.name, body.join(","))
        };
        for s in parse_exposition(first).samples {
            let k = key(&s);
            series.entry(k).or_default().0 = s.value;
        }
        for s in parse_exposition(second).samples {
            let k = key(&s);
            series.entry(k).or_default().1 = s.value;
        }
        // The test scraped the target: up is 1 both times.
        series.insert(
            format!("up{{job=\"{job}\",pod=\"{instance}\"}}"),
            ("1".into(), "1".into()),
        );
    }
    let value = |v: &str| {
        if v.is_empty() {
            "_".to_owned()
        } else {
            v.to_owned()
        }
    };
    let mut input = String::new();
    for (name, (a, b)) in &series {
        input.push_str(&format!(
            "      - series: {}\n        values: \"{} {}\"\n",
            serde_json::to_string(name).unwrap(),
            value(a),
            value(b)
        ));
    }
    let queries = dashboard_queries();
    let window = format!("{}s", elapsed + 1);
    let mut file = format!(
        "evaluation_interval: 1s\ntests:\n  - interval: {elapsed}s\n    input_series:\n{input}    promql_expr_test:\n"
    );
    let mut exprs = Vec::new();
    for (_, _, expr) in &queries {
        let e = expr
            .replace("$__rate_interval", &window)
            .replace("time()", &now.to_string());
        file.push_str(&format!(
            "      - expr: {}\n        eval_time: {elapsed}s\n        exp_samples: []\n",
            serde_json::to_string(&e).unwrap()
        ));
        exprs.push(e);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("panels.yaml"), &file).unwrap();
    let (_, out) = run_promtool(&["test", "rules", "panels.yaml"], dir.path(), None);
    // expr: "…", time: …,\n exp: nil\n got: {labels} value, {labels} value
    let mut results: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("expr: ") {
            let end = rest.rfind(", time:").unwrap_or(rest.len());
            current = serde_json::from_str::<String>(&rest[..end]).ok();
        } else if let Some(got) = line.strip_prefix("got: ")
            && let Some(expr) = current.take()
        {
            results.insert(expr, got.to_owned());
        }
    }
    assert!(
        !results.is_empty(),
        "promtool evaluated nothing:\n{out}\n{file}"
    );
    let mut text = format!(
        "gitwarden dashboard, each panel query evaluated by promtool over two real scrapes \
         {elapsed}s apart (rates over that window)\n"
    );
    let mut last_title = String::new();
    for ((title, legend, _), expr) in queries.iter().zip(&exprs) {
        if *title != last_title {
            text.push_str(&format!("\n{title}\n"));
            last_title.clone_from(title);
        }
        let got = results
            .get(expr)
            .map_or("(no data)".to_owned(), |g| pretty_values(g));
        let legend = if legend == "__auto" { "" } else { legend };
        text.push_str(&format!("  {legend:<28} {got}\n"));
    }
    text
}

/// `{a="x"} 1.5E+00, {b="y"} 3E+00` → `{a="x"} 1.5, {b="y"} 3`.
fn pretty_values(got: &str) -> String {
    got.split(", {")
        .map(|part| {
            let (labels, value) = part.rsplit_once(' ').unwrap_or(("", part));
            let labels = labels.trim_start_matches('{').trim_end_matches('}');
            let v: f64 = value.parse().unwrap_or(f64::NAN);
            let v = if v.abs() >= 1000.0 || v == v.trunc() {
                format!("{v:.0}")
            } else {
                format!("{v:.4}")
            };
            if labels.is_empty() {
                v
            } else {
                format!("{{{labels}}} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn the_metric_and_label_extraction_reads_promql() {
    let expr = r#"sum by (reason, endpoint) (rate(gitwarden_webhook_requests_total{decision="deny",reason!~"a,b"}[5m])) > 0.1 and on(pod) up{job="x"}"#;
    assert_eq!(
        metric_names(expr),
        BTreeSet::from(["gitwarden_webhook_requests_total".into(), "up".into()])
    );
    assert_eq!(
        label_names(expr),
        BTreeSet::from([
            "reason".into(),
            "endpoint".into(),
            "decision".into(),
            "pod".into(),
            "job".into()
        ])
    );
}
