//! Objects git changes where the API server will not change them in place
//! (a Job's pod template): recreated when git marks them
//! `gitwarden.io/force: enabled`, as Flux does; otherwise the revision fails
//! and names them.

use std::time::Duration;

use gitwarden_agent::status::Synced;
use gitwarden_apply::Action;
use gitwarden_tests::testdata;
use gitwarden_tests::wait::wait_blocking;

use crate::common::{AgentSetup, actions, cleanup, json};

const FORCE: &str = "{gitwarden.io/force: enabled}";

/// The Job `migrate` running `image` in container `container`.
fn job(annotations: &str, container: &str, image: &str) -> String {
    testdata::rendered(
        "agent/migrate-job.yaml",
        &[
            ("ANNOTATIONS", annotations),
            ("CONTAINER", container),
            ("IMAGE", image),
        ],
    )
    .unwrap()
}

/// `gitwarden-agent sync`, which must succeed, not waiting for the Job to
/// complete (this cluster has no node to run it).
fn sync(s: &AgentSetup) -> Synced {
    s.sync_with(&["--health-timeout", "0s"])
}

/// The live Job's uid and image.
fn live_job(s: &AgentSetup) -> (String, String) {
    let out = s.kubectl(&[
        "get",
        "job",
        "migrate",
        "-o",
        "jsonpath={.metadata.uid} {.spec.template.spec.containers[0].image}",
    ]);
    let (uid, image) = out.expect_success().split_once(' ').unwrap();
    (uid.to_owned(), image.to_owned())
}

/// Applies the Job (`annotations`, image migrate:1), then commits it changed
/// to `container` and image migrate:2 (a pod template change); the uid of
/// the Job the first sync created.
fn applied_then_changed(s: &AgentSetup, annotations: &str, container: &str) -> String {
    s.commit(
        &[("app/job.yaml", &job(annotations, "migrate", "migrate:1"))],
        "v1",
    );
    sync(s);
    let (uid, _) = live_job(s);
    s.commit(
        &[("app/job.yaml", &job(annotations, container, "migrate:2"))],
        "v2",
    );
    uid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_job_whose_pod_template_changes_is_deleted_and_created_again() {
    let s = AgentSetup::new("recreate-forced").await;
    let uid = applied_then_changed(&s, FORCE, "migrate");
    let diff = s.agent("diff", &[]);
    assert_eq!(diff.code, 1, "{}\n{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout.contains("± recreate batch/v1 Job") && diff.stdout.contains("app/job.yaml"),
        "{}",
        diff.stdout
    );
    assert_eq!(live_job(&s).0, uid, "diff wrote");

    let synced = sync(&s);
    let job_action = actions(&synced)
        .into_iter()
        .find(|(object, _)| object.ends_with("/migrate"))
        .map(|(_, action)| action);
    assert_eq!(
        job_action,
        Some(Action::Recreated),
        "{}",
        json(&synced.report)
    );
    let (new_uid, image) = live_job(&s);
    assert_ne!(new_uid, uid, "the Job was not created again");
    assert_eq!(image, "migrate:2");

    // Recreated once: the next sync finds it as git has it.
    let again = sync(&s);
    assert_eq!(again.report.write_requests, 0, "{}", json(&again.report));
    assert_eq!(live_job(&s).0, new_uid);
    assert_eq!(s.agent("diff", &[]).code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immutable_change_without_force_fails_the_revision_naming_the_object() {
    let s = AgentSetup::new("recreate-unforced").await;
    let uid = applied_then_changed(&s, "{}", "migrate");
    let run = s.agent("sync", &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("app/job.yaml:") && run.stderr.contains("immutable"),
        "{}",
        run.stderr
    );
    assert_eq!(live_job(&s), (uid, "migrate:1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_job_that_is_invalid_on_its_own_is_refused_and_the_live_one_stays() {
    let s = AgentSetup::new("recreate-invalid").await;
    // An immutable change, and a container name no pod may have.
    let uid = applied_then_changed(&s, FORCE, "Not_A_Name");
    let run = s.agent("sync", &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("app/job.yaml:")
            && run.stderr.contains("refused as a new one too")
            && run.stderr.contains("Not_A_Name")
            && !run.stderr.contains("field is immutable"),
        "the error is the object's own, not the immutable field: {}",
        run.stderr
    );
    assert_eq!(live_job(&s), (uid, "migrate:1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_job_refused_by_an_admission_policy_is_never_deleted_for_it() {
    let s = AgentSetup::new("recreate-policy").await;
    // `allowed-*`: the guards of other tests leave it alone.
    let policy = format!("allowed-update-refuser-{}", s.ns());
    let manifest = testdata::rendered(
        "agent/update-refusing-job-policy.yaml",
        &[("NAME", &policy), ("NAMESPACE", s.ns())],
    )
    .unwrap();
    let admin = s.cluster.kubeconfig(gitwarden_tests::Identity::Admin);
    gitwarden_tests::kubectl::run_kubectl_stdin(&admin, &["create", "-f", "-"], &manifest)
        .expect_success();
    let _remove = cleanup(
        &s,
        &[
            ("validatingadmissionpolicybinding", &policy),
            ("validatingadmissionpolicy", &policy),
        ],
    );
    s.commit(
        &[("app/job.yaml", &job(FORCE, "migrate", "migrate:1"))],
        "v1",
    );
    sync(&s);
    let (uid, _) = live_job(&s);

    // Enforced once a server-side dry-run of an update is refused.
    let enforced = wait_blocking(Duration::from_secs(30), || {
        s.kubectl(&["annotate", "job", "migrate", "probe=1", "--dry-run=server"])
            .stderr
            .contains(&policy)
            .then_some(())
    });
    assert!(enforced.is_some(), "the policy is never enforced");

    // A change the API server would make in place (an annotation): the
    // policy refuses it as Invalid and would let a create through. Still a
    // refusal, reported by name, and the Job stays.
    s.commit(
        &[(
            "app/job.yaml",
            &job(
                "{gitwarden.io/force: enabled, revision: '2'}",
                "migrate",
                "migrate:1",
            ),
        )],
        "v2",
    );
    let run = s.agent("sync", &["--health-timeout", "0s"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("app/job.yaml:") && run.stderr.contains(&policy),
        "{}",
        run.stderr
    );
    assert_eq!(live_job(&s).0, uid, "deleted for a policy's refusal");
}
