//! Admission plugins that refuse git: say so, once per refusal, everywhere.
//!
//! When a webhook or admission policy gitwarden does not own refuses the
//! agent's dry-run or apply, git is no longer what the cluster runs. The
//! refusals of each attempt go to `/status` (`admissionRefusals`, naming the
//! plugin and the object), to `gitwarden_agent_admission_refused_total`, to
//! the log, and to a Warning Event `AdmissionRefused` on the object — once
//! per object and plugin while the refusal lasts, not on every retry.

use std::collections::BTreeSet;

use gitwarden_apply::{AdmissionRefusal, SyncError, SyncReport};
use gitwarden_manifests::ObjectRef;
use kube::runtime::events::{EventType, Recorder};

use crate::pipeline::PipelineError;
use crate::reporter::Reporter;
use gitwarden_agent::status::{RefusalReport, RefusalStage};

/// The applies of `report` that an admission plugin refused.
pub fn from_report(report: &SyncReport) -> Vec<RefusalReport> {
    report
        .failures()
        .filter_map(|result| {
            let refused_by = result.refused_by.clone()?;
            let message = match &result.action {
                gitwarden_apply::Action::Failed(message) => message.clone(),
                _ => String::new(),
            };
            Some(RefusalReport {
                object: result.object.clone(),
                location: result.location.clone(),
                refused_by,
                stage: RefusalStage::Apply,
                message,
            })
        })
        .collect()
}

/// The dry-run refusals that stopped a sync, when that is why it failed.
pub fn from_error(error: &PipelineError) -> Vec<RefusalReport> {
    let PipelineError::Apply {
        source: SyncError::Validation(errors),
        ..
    } = error
    else {
        return Vec::new();
    };
    errors
        .errors
        .iter()
        .filter_map(|e| {
            Some(RefusalReport {
                object: e.object.clone(),
                location: e.location.clone(),
                refused_by: e.refused_by.clone()?,
                stage: RefusalStage::DryRun,
                message: e.message.clone(),
            })
        })
        .collect()
}

/// The (object, plugin) refusals already announced with an Event; only
/// those still refused are remembered, so a refusal that clears and comes
/// back is announced again.
#[derive(Debug, Default)]
pub struct Announced(BTreeSet<(ObjectRef, AdmissionRefusal)>);

impl Announced {
    /// The refusals of `now` not announced yet; afterwards the set holds
    /// exactly `now`'s.
    pub fn fresh<'a>(&mut self, now: &'a [RefusalReport]) -> Vec<&'a RefusalReport> {
        let keys: BTreeSet<_> = now
            .iter()
            .map(|r| (r.object.clone(), r.refused_by.clone()))
            .collect();
        let fresh = now
            .iter()
            .filter(|r| !self.0.contains(&(r.object.clone(), r.refused_by.clone())))
            .collect();
        self.0 = keys;
        fresh
    }
}

/// Reports one attempt's refusals: status and metric always, log and Event
/// for the new ones.
pub async fn record(
    recorder: &Recorder,
    reporter: &Reporter,
    refusals: Vec<RefusalReport>,
    announced: &mut Announced,
) {
    for r in announced.fresh(&refusals) {
        tracing::error!(object = %r.object, location = %r.location, plugin = %r.refused_by,
            stage = ?r.stage, message = %r.message,
            "an admission plugin gitwarden does not own refuses what git says");
        let what = match r.stage {
            RefusalStage::DryRun => "the dry-run of the revision (nothing of it was applied)",
            RefusalStage::Apply => "the apply",
        };
        let note = format!(
            "{} refused {what} of this object from git ({}): {}",
            r.refused_by, r.location, r.message
        );
        crate::events::publish(
            recorder,
            &crate::events::reference(&r.object),
            EventType::Warning,
            "AdmissionRefused",
            "Apply",
            note,
        )
        .await;
    }
    reporter.admission_refusals(refusals);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    fn refusal(name: &str, policy: &str) -> RefusalReport {
        RefusalReport {
            object: ObjectRef::new(
                &GroupVersionKind::gvk("", "v1", "ConfigMap"),
                Some("ns"),
                name,
            ),
            location: gitwarden_manifests::Location::new("a.yaml", 1),
            refused_by: AdmissionRefusal::ValidatingAdmissionPolicy {
                policy: policy.into(),
                binding: None,
            },
            stage: RefusalStage::DryRun,
            message: "denied".into(),
        }
    }

    #[test]
    fn a_refusal_is_announced_once_while_it_lasts_and_again_after_it_cleared() {
        let mut announced = Announced::default();
        let now = [refusal("settings", "no-agent")];
        assert_eq!(announced.fresh(&now).len(), 1);
        assert_eq!(announced.fresh(&now).len(), 0, "same refusal, next retry");
        let other_plugin = [refusal("settings", "other")];
        assert_eq!(announced.fresh(&other_plugin).len(), 1);
        assert_eq!(announced.fresh(&[]).len(), 0);
        assert_eq!(announced.fresh(&now).len(), 1, "came back");
    }

    #[test]
    fn only_validation_failures_carry_dry_run_refusals() {
        let error = PipelineError::Apply {
            revision: "abc".into(),
            source: SyncError::Validation(gitwarden_apply::ValidationErrors {
                errors: vec![
                    gitwarden_apply::ObjectError {
                        object: refusal("a", "p").object,
                        location: refusal("a", "p").location,
                        message: "ValidatingAdmissionPolicy 'p' denied request: no".into(),
                        refused_by: Some(refusal("a", "p").refused_by),
                    },
                    gitwarden_apply::ObjectError {
                        object: refusal("b", "p").object,
                        location: refusal("b", "p").location,
                        message: "invalid".into(),
                        refused_by: None,
                    },
                ],
            }),
        };
        let found = from_error(&error);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].object.name, "a");
        assert_eq!(found[0].stage, RefusalStage::DryRun);
    }
}
