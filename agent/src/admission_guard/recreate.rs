//! Creating again an admission object from git that someone deleted.
//!
//! No webhook sees a delete of a webhook configuration or an admission
//! policy, so nothing can refuse it: deleting gitwarden's own
//! ValidatingWebhookConfiguration stops all enforcement. The webhook puts its
//! own configurations back when it is running; this is what puts them back
//! when it is not (crashed, rescheduling, its node gone), and what puts back
//! any other admission object from git at once instead of at the next sync.
//!
//! Only an object the guard saw live is created again: enforcement that had
//! started is restored, and a fresh install still registers nothing before
//! the webhook can answer (it registers its configurations itself once
//! ready). The body is git's, with the `caBundle` the object held when the
//! guard last saw it.

use gitwarden_agent::admission_chain::{GitObjects, Verdict, judge, key};
use gitwarden_shared::admission_object;
use gitwarden_shared::names::FIELD_MANAGER;
use gitwarden_shared::policy::AdmissionChainPolicy;
use kube::api::{Api, DynamicObject, PostParams};

use super::{Guard, PutBack};

impl Guard {
    /// Creates again every deleted object that git holds; forgets those it
    /// does not (the guard or prune removed them, or they left git). What
    /// fails stays for the next pass (every [`super::RETRY`] at the latest).
    pub(super) async fn recreate_deleted(
        &mut self,
        git: &GitObjects,
        policy: &AdmissionChainPolicy,
    ) {
        let now = tokio::time::Instant::now();
        for ((index, name), was) in self.deleted.clone() {
            let w = self.watched[index].clone();
            let entry = (index, name.clone());
            if self
                .recreate_after
                .get(&entry)
                .is_some_and(|after| now < *after)
            {
                continue;
            }
            let body = match judge(w.kind, &name, git, policy) {
                Verdict::InGit => git.admission_body(&key(w.kind, &name)),
                Verdict::Allowed { .. } | Verdict::NotInGit => None,
            };
            let Some(body) = body.filter(|b| b["apiVersion"] == w.resource.api_version.as_str())
            else {
                // Not git's, or git names another version of it: the next
                // sync creates that one.
                self.deleted.remove(&entry);
                self.recreate_after.remove(&entry);
                continue;
            };
            let created = admission_object::recreated(&body, &was.ca_bundles);
            let created: DynamicObject = match serde_json::from_value(created) {
                Ok(created) => created,
                Err(e) => {
                    tracing::warn!(kind = %w.kind, %name, error = %e, "git's admission object is not an object: not created again");
                    self.deleted.remove(&entry);
                    continue;
                }
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &w.resource);
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            let result = api.create(&params, &created).await;
            self.recreate_after.remove(&entry);
            match result {
                Ok(_) => {
                    self.deleted.remove(&entry);
                    self.record_put_back(PutBack::Recreated, &w, &name, git.revision())
                        .await;
                }
                // Someone was first (the webhook registering its own): the
                // watch brings that object, which is judged like any other.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    self.deleted.remove(&entry);
                }
                // Refused for good (forbidden, invalid): said once, not retried
                // in a loop.
                Err(kube::Error::Api(status))
                    if (400..500).contains(&status.code) && status.code != 429 =>
                {
                    tracing::warn!(kind = %w.kind, %name, error = %status.message, "the API server refuses to create again an admission object from git that was deleted: not tried again");
                    self.deleted.remove(&entry);
                }
                Err(e) => {
                    tracing::warn!(kind = %w.kind, %name, error = %e, "could not create again an admission object from git that was deleted; retrying");
                    self.recreate_after.insert(entry, now + super::RETRY);
                }
            }
        }
    }
}
