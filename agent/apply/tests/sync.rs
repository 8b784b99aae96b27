//! gitwarden-apply against the real API server of tests/cluster.
//!
//! Every client here counts its requests at the HTTP layer, so "no writes"
//! is measured on the wire, not taken from gitwarden's own report.

use anyhow::{Context, Result, bail};
use gitwarden_apply::{
    Action, Applier, ApplyConfig, Discovery, PrunePolicy, RequestCounter, SyncError, SyncReport,
};
use gitwarden_manifests::{ManifestFile, ResolvedSet};
use gitwarden_tests::{Identity, TestCluster, TestNamespace, testdata};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use kube::core::{DynamicObject, GroupVersionKind};
use std::sync::Arc;

/// One test's namespace, counted client and applier.
struct Env {
    ns: TestNamespace,
    counter: RequestCounter,
    client: kube::Client,
    applier: Applier,
}

async fn counted_client(counter: &RequestCounter) -> Result<kube::Client> {
    let cluster = TestCluster::shared();
    let config =
        gitwarden_runtime::client::config(Some(&cluster.kubeconfig(Identity::Admin))).await?;
    Ok(counter.client(config)?)
}

async fn applier(
    client: kube::Client,
    inventory_namespace: &str,
    prune: PrunePolicy,
) -> Result<Applier> {
    let discovery = Arc::new(Discovery::new(client.clone()).await?);
    let config = ApplyConfig {
        inventory_namespace: inventory_namespace.to_owned(),
        prune,
        crd_timeout: std::time::Duration::from_secs(30),
        ..ApplyConfig::default()
    };
    Ok(Applier::new(client, discovery, config))
}

async fn env(prefix: &str) -> Result<Env> {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace(prefix).await?;
    let counter = RequestCounter::new();
    let client = counted_client(&counter).await?;
    let applier = applier(client.clone(), ns.name(), PrunePolicy::default()).await?;
    Ok(Env {
        ns,
        counter,
        client,
        applier,
    })
}

/// Loads YAML files as the agent would, namespaces defaulted to `ns`.
fn load(files: &[(&str, String)], discovery: &Discovery, ns: &str) -> Result<ResolvedSet> {
    let files: Vec<ManifestFile<'_>> = files
        .iter()
        .map(|(path, content)| ManifestFile {
            path,
            content: content.as_bytes(),
        })
        .collect();
    gitwarden_manifests::load(&files)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .resolve_namespaces(discovery, ns)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn config_map(name: &str, value: &str) -> String {
    "---\n".to_owned()
        + &testdata::rendered("apply/configmap.yaml", &[("NAME", name), ("VALUE", value)])
            .expect("the fixture apply/configmap.yaml")
}

fn config_maps(names: &[&str], value: &str) -> String {
    names.iter().map(|name| config_map(name, value)).collect()
}

fn action_of<'a>(report: &'a SyncReport, name: &str) -> Option<&'a Action> {
    report
        .applied
        .iter()
        .find(|result| result.object.name == name)
        .map(|result| &result.action)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:06}", rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1_000_000
}

async fn get_dynamic(
    client: &kube::Client,
    discovery: &Discovery,
    gvk: GroupVersionKind,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>> {
    let resolved = discovery.resolve(&gvk).context("kind not served")?;
    Ok(resolved.api(client.clone(), ns).get_opt(name).await?)
}

fn assert_gitwarden_owned(object: &DynamicObject) {
    let labels = object.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("gitwarden"),
        "{:?} lacks the managed-by label",
        object.metadata.name
    );
    let managers: Vec<String> = object
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| entry.operation.as_deref() == Some("Apply"))
        .filter_map(|entry| entry.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "gitwarden"),
        "{:?} not applied by field manager gitwarden: {managers:?}",
        object.metadata.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_applies_every_kind_then_a_noop_resync_writes_nothing() -> Result<()> {
    let env = env("apply-first").await?;
    let ns = env.ns.name();
    let new_ns = unique("gw-new");
    let group = format!("g{}.gitwarden.test", rand_suffix());
    let cluster_role = unique("gw-reader");
    let files = vec![
        (
            "crds/widget.yaml",
            testdata::rendered("apply/widget-crd.yaml", &[("GROUP", &group)])?,
        ),
        (
            "namespaces.yaml",
            testdata::rendered("namespace.yaml", &[("NAME", &new_ns)])?,
        ),
        (
            "widgets.yaml",
            testdata::rendered(
                "apply/widget.yaml",
                &[("GROUP", &group), ("NAMESPACE", &new_ns)],
            )?,
        ),
        ("config.yaml", config_maps(&["settings", "flags"], "one")),
        (
            "in-new-ns.yaml",
            testdata::rendered("apply/local-configmap.yaml", &[("NAMESPACE", &new_ns)])?,
        ),
        ("deploy.yaml", testdata::read("apply/web-deployment.yaml")?),
        (
            "rbac.yaml",
            testdata::rendered(
                "apply/configmap-reader-clusterrole.yaml",
                &[("NAME", &cluster_role)],
            )?,
        ),
    ];
    let set = load(&files, env.applier.discovery(), ns)?;
    let report = env.applier.sync(&set, "rev-1").await?;
    let failures: Vec<_> = report.failures().collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.count(&Action::Created), 8, "{report:#?}");
    assert!(report.write_requests >= 8);
    // The report is the agent's /status body.
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["revision"], "rev-1");

    let discovery = env.applier.discovery();
    let checks = [
        (
            GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            None,
            format!("widgets.{group}"),
        ),
        (
            GroupVersionKind::gvk("", "v1", "Namespace"),
            None,
            new_ns.clone(),
        ),
        (
            GroupVersionKind::gvk(&group, "v1", "Widget"),
            Some(new_ns.as_str()),
            "w1".to_owned(),
        ),
        (
            GroupVersionKind::gvk("", "v1", "ConfigMap"),
            Some(ns),
            "settings".to_owned(),
        ),
        (
            GroupVersionKind::gvk("", "v1", "ConfigMap"),
            Some(ns),
            "flags".to_owned(),
        ),
        (
            GroupVersionKind::gvk("", "v1", "ConfigMap"),
            Some(new_ns.as_str()),
            "local".to_owned(),
        ),
        (
            GroupVersionKind::gvk("apps", "v1", "Deployment"),
            Some(ns),
            "web".to_owned(),
        ),
        (
            GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            None,
            cluster_role.clone(),
        ),
    ];
    for (gvk, namespace, name) in &checks {
        let object = get_dynamic(&env.client, discovery, gvk.clone(), *namespace, name)
            .await?
            .with_context(|| format!("{} {name} missing", gvk.kind))?;
        assert_gitwarden_owned(&object);
    }

    // Let controllers write status (Deployment, CRD): that bumps
    // resourceVersions but must not count as drift.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let before = (env.counter.writes(), env.counter.dry_runs());
    let report = env.applier.sync(&set, "rev-1").await?;
    assert_eq!(
        (env.counter.writes(), env.counter.dry_runs()),
        before,
        "a no-op resync sent write or dry-run requests: {report:#?}"
    );
    assert_eq!(report.write_requests, 0);
    assert_eq!(report.count(&Action::Unchanged), 8, "{report:#?}");

    // Clean up the cluster-scoped objects by syncing an empty revision.
    let cleanup = Applier::new(
        env.client.clone(),
        env.applier.discovery().clone(),
        ApplyConfig {
            inventory_namespace: ns.to_owned(),
            prune: PrunePolicy {
                allow_mass_prune: true,
                ..PrunePolicy::default()
            },
            ..ApplyConfig::default()
        },
    );
    let report = cleanup.sync(&ResolvedSet::default(), "rev-empty").await?;
    assert_eq!(report.pruned.len(), 8, "{report:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_map_is_reapplied_alone_and_a_removed_one_pruned_unless_disabled()
-> Result<()> {
    let env = env("apply-change").await?;
    let ns = env.ns.name();
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let keep = testdata::read("apply/keep-configmap.yaml")?;
    let rev1 = load(
        &[
            ("cms.yaml", config_maps(&names, "one")),
            ("keep.yaml", keep),
        ],
        env.applier.discovery(),
        ns,
    )?;
    env.applier.sync(&rev1, "rev-1").await?;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    let rv_of = |cm: ConfigMap| cm.metadata.resource_version.unwrap_or_default();
    let c_before = rv_of(api.get("c").await?);

    // rev-2: `a` changes, `b` and `keep` leave git (2 of 9, under 25%).
    let rev2_text = config_map("a", "two") + &config_maps(&names[2..], "one");
    let rev2 = load(&[("cms.yaml", rev2_text)], env.applier.discovery(), ns)?;
    let before = env.counter.writes();
    let report = env.applier.sync(&rev2, "rev-2").await?;
    assert_eq!(
        action_of(&report, "a"),
        Some(&Action::Configured),
        "{report:#?}"
    );
    for name in &names[2..] {
        assert_eq!(action_of(&report, name), Some(&Action::Unchanged), "{name}");
    }
    assert_eq!(
        report
            .pruned
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(
        report
            .kept
            .iter()
            .any(|k| k.object.name == "keep" && k.reason.contains("disabled")),
        "{report:#?}"
    );
    assert_eq!(report.prune_refused, None);
    // One apply, one delete, one inventory shard.
    assert_eq!(env.counter.writes() - before, 3, "{report:#?}");
    assert_eq!(report.write_requests, 3);

    assert_eq!(
        api.get("a")
            .await?
            .data
            .unwrap_or_default()
            .get("key")
            .map(String::as_str),
        Some("two")
    );
    assert!(api.get_opt("b").await?.is_none(), "b was not pruned");
    assert!(
        api.get_opt("keep").await?.is_some(),
        "prune-disabled object was deleted"
    );
    assert_eq!(
        rv_of(api.get("c").await?),
        c_before,
        "an unchanged object was written"
    );

    // `keep` left the inventory: a further sync neither prunes nor reports it.
    let report = env.applier.sync(&rev2, "rev-2").await?;
    assert!(
        report.kept.is_empty() && report.pruned.is_empty(),
        "{report:#?}"
    );
    assert_eq!(report.write_requests, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_prune_is_refused_and_reported_until_allowed() -> Result<()> {
    let env = env("apply-mass").await?;
    let ns = env.ns.name();
    let rev1 = load(
        &[("cms.yaml", config_maps(&["a", "b", "c", "d"], "one"))],
        env.applier.discovery(),
        ns,
    )?;
    env.applier.sync(&rev1, "rev-1").await?;
    let rev2 = load(
        &[("cms.yaml", config_map("a", "two"))],
        env.applier.discovery(),
        ns,
    )?;
    let report = env.applier.sync(&rev2, "rev-2").await?;
    let reason = report
        .prune_refused
        .clone()
        .context("prune of 3/4 was not refused")?;
    assert!(reason.contains("3 of 4"), "{reason}");
    assert!(report.pruned.is_empty());
    assert_eq!(
        action_of(&report, "a"),
        Some(&Action::Configured),
        "apply must still happen"
    );
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    for name in ["b", "c", "d"] {
        assert!(api.get_opt(name).await?.is_some(), "{name} was pruned");
    }
    // Still refused on the next sync: the refused objects stay inventoried.
    let report = env.applier.sync(&rev2, "rev-2").await?;
    assert!(report.prune_refused.is_some());

    let allowed = applier(
        env.client.clone(),
        ns,
        PrunePolicy {
            allow_mass_prune: true,
            ..PrunePolicy::default()
        },
    )
    .await?;
    let report = allowed.sync(&rev2, "rev-2").await?;
    assert_eq!(report.pruned.len(), 3, "{report:#?}");
    assert!(api.get_opt("b").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_object_fails_the_dry_run_and_nothing_is_applied() -> Result<()> {
    let env = env("apply-invalid").await?;
    let ns = env.ns.name();
    let deploy = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\ndata:\n  a: b\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\nspec:\n  replicas: three\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: registry.invalid/web:1\n";
    let set = load(
        &[
            ("apps/deploy.yaml", deploy.to_owned()),
            ("other.yaml", config_map("other", "x")),
        ],
        env.applier.discovery(),
        ns,
    )?;
    let before = env.counter.writes();
    let error = match env.applier.sync(&set, "rev-bad").await {
        Ok(report) => bail!("a broken revision synced: {report:#?}"),
        Err(error) => error,
    };
    let SyncError::Validation(errors) = &error else {
        bail!("expected a validation error, got {error}");
    };
    assert_eq!(errors.errors.len(), 1, "{error}");
    let refused = &errors.errors[0];
    assert_eq!(
        refused.location.to_string(),
        "apps/deploy.yaml:8",
        "{error}"
    );
    assert_eq!(refused.object.name, "broken");
    let text = error.to_string();
    assert!(
        text.contains("apps/deploy.yaml:8") && text.contains("replicas"),
        "{text}"
    );
    assert_eq!(
        env.counter.writes(),
        before,
        "a broken revision wrote something"
    );
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    for name in ["fine", "other"] {
        assert!(
            api.get_opt(name).await?.is_none(),
            "{name} was applied from a broken revision"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_survives_a_restart_and_the_next_noop_sync_writes_nothing() -> Result<()> {
    let env = env("apply-restart").await?;
    let ns = env.ns.name();
    let files = [("cms.yaml", config_maps(&["a", "b", "c"], "one"))];
    let set = load(&files, env.applier.discovery(), ns)?;
    env.applier.sync(&set, "rev-1").await?;
    drop(env.applier);

    // A new process: new client, new discovery, new applier, nothing in memory.
    let counter = RequestCounter::new();
    let client = counted_client(&counter).await?;
    let restarted = applier(client, ns, PrunePolicy::default()).await?;
    let inventory = restarted.inventory().await?;
    assert_eq!(inventory.revision.as_deref(), Some("rev-1"));
    assert_eq!(inventory.entries.len(), 3);
    let set = load(&files, restarted.discovery(), ns)?;
    let report = restarted.sync(&set, "rev-1").await?;
    assert_eq!(counter.non_reads(), 0, "restart caused writes: {report:#?}");
    assert_eq!(report.count(&Action::Unchanged), 3);

    // Deleting an object behind gitwarden's back is noticed and healed.
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    api.delete("b", &DeleteParams::default()).await?;
    let report = restarted.sync(&set, "rev-1").await?;
    assert_eq!(
        action_of(&report, "b"),
        Some(&Action::Created),
        "{report:#?}"
    );
    assert_eq!(action_of(&report, "a"), Some(&Action::Unchanged));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_a_changed_field_and_an_object_to_prune_without_writing() -> Result<()> {
    let env = env("apply-diff").await?;
    let ns = env.ns.name();
    let rev1 = load(
        &[("cms.yaml", config_maps(&["a", "b", "c", "d", "e"], "one"))],
        env.applier.discovery(),
        ns,
    )?;
    env.applier.sync(&rev1, "rev-1").await?;
    let in_sync = env.applier.diff(&rev1).await?;
    assert!(in_sync.in_sync(), "{in_sync:#?}");

    let rev2_text =
        config_map("a", "two") + &config_maps(&["b", "c", "d"], "one") + &config_map("new", "x");
    let rev2 = load(&[("cms.yaml", rev2_text)], env.applier.discovery(), ns)?;
    let before = env.counter.writes();
    let diff = env.applier.diff(&rev2).await?;
    assert_eq!(env.counter.writes(), before, "diff wrote something");
    assert!(!diff.in_sync());
    assert_eq!(diff.change.len(), 1, "{diff:#?}");
    let change = &diff.change[0];
    assert_eq!(change.object.name, "a");
    let patch = serde_json::to_value(&change.patch)?;
    assert_eq!(
        patch,
        serde_json::json!([{ "op": "replace", "path": "/data/key", "value": "two" }]),
    );
    assert_eq!(
        diff.create
            .iter()
            .map(|c| c.object.name.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
    assert_eq!(
        diff.prune
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["e"]
    );
    assert_eq!(diff.prune_refused, None);
    // And the cluster is untouched.
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    assert!(api.get_opt("e").await?.is_some());
    assert!(api.get_opt("new").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_touching_other_fields_cause_no_write_but_changing_gitwarden_fields_is_healed()
-> Result<()> {
    use kube::api::{Patch, PatchParams};
    let env = env("apply-drift").await?;
    let ns = env.ns.name();
    let set = load(
        &[("cms.yaml", config_maps(&["a", "b"], "one"))],
        env.applier.discovery(),
        ns,
    )?;
    env.applier.sync(&set, "rev-1").await?;
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);

    // Someone adds a field gitwarden does not own: resourceVersion moves, but
    // gitwarden's fields are intact, so nothing is written.
    let other = PatchParams::apply("someone-else");
    let extra = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"note": "hi"}}});
    api.patch("a", &other, &Patch::Apply(&extra)).await?;
    let report = env.applier.sync(&set, "rev-1").await?;
    assert_eq!(report.write_requests, 0, "{report:#?}");
    assert_eq!(action_of(&report, "a"), Some(&Action::Unchanged));

    // Someone edits a field gitwarden owns: the next sync re-applies it.
    let edit = serde_json::json!({"data": {"key": "hacked"}});
    api.patch("b", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    let report = env.applier.sync(&set, "rev-1").await?;
    assert_eq!(
        action_of(&report, "b"),
        Some(&Action::Configured),
        "{report:#?}"
    );
    assert_eq!(action_of(&report, "a"), Some(&Action::Unchanged));
    let b = api.get("b").await?;
    assert_eq!(
        b.data.unwrap_or_default().get("key").map(String::as_str),
        Some("one")
    );
    // Healed and recorded: quiet again.
    let report = env.applier.sync(&set, "rev-1").await?;
    assert_eq!(report.write_requests, 0, "{report:#?}");
    Ok(())
}
