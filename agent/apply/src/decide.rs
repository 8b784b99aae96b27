//! What a sync does with each object, decided from what was read before it:
//! the live state ([`crate::plan`]), the previous inventory and the time.
//!
//! Pure: no client, no I/O, so every decision is unit-tested here and the
//! execute step ([`crate::execute`]) only carries decisions out.

use crate::inventory::{Inventory, InventoryEntry};
use crate::plan::Live;
use gitwarden_manifests::ObjectRef;
use std::collections::HashSet;

/// What one object of the revision needs, as read before the sync.
#[derive(Debug, Clone)]
pub(crate) struct Observed<'a> {
    /// The object.
    pub object: ObjectRef,
    /// The hash of the body git asks for ([`crate::manifest_hash`]).
    pub hash: &'a str,
    /// Whether its kind is served (it can be dry-run before any apply).
    pub addressable: bool,
    /// For a Pod: the service account it runs as (the API server refuses a
    /// Pod, dry-run included, whose service account does not exist yet).
    pub service_account: Option<String>,
    /// What the cluster holds for it.
    pub live: &'a Live,
}

/// When an object to apply is dry-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validation {
    /// With the whole revision, before anything is written.
    Early,
    /// Right after the revision's CRDs and Namespaces are applied: its kind
    /// is not served yet, or its namespace is new in this revision.
    Deferred,
    /// Right after the revision's setup (service accounts among it) is
    /// applied: a Pod whose service account is new in this revision.
    AfterSetup,
}

/// What the sync does with one object of the revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Absent (or of a kind not served yet): apply it.
    Create(Validation),
    /// Present, and git or someone else changed it since the last apply:
    /// apply it.
    Change(Validation),
    /// Present as the last apply left it: send nothing.
    Skip,
    /// A break-glass window is open on it until `until`: leave it alone.
    Hold {
        /// When the window closes.
        until: jiff::Timestamp,
    },
    /// Its break-glass window closed: apply it from git, then remove the
    /// break-glass stamps and label.
    Revert(Validation),
}

impl Decision {
    /// When the object is dry-run, `None` when it is not applied.
    pub(crate) fn validation(self) -> Option<Validation> {
        match self {
            Decision::Create(validation)
            | Decision::Change(validation)
            | Decision::Revert(validation) => Some(validation),
            Decision::Skip | Decision::Hold { .. } => None,
        }
    }

    /// Whether the object is applied.
    pub(crate) fn applies(self) -> bool {
        self.validation().is_some()
    }
}

/// Every decision of a sync.
#[derive(Debug)]
pub(crate) struct Decisions<'i> {
    /// Each object of the revision with its decision, in the order observed.
    pub objects: Vec<(ObjectRef, Decision)>,
    /// The prune candidates: objects of the previous inventory that left
    /// git, in inventory order (whether they are deleted is the prune's
    /// business: it re-reads each one).
    pub prune: Vec<&'i ObjectRef>,
}

/// Decides every object of the revision, and which inventoried objects
/// left git, at `now`.
pub(crate) fn decide<'i>(
    observed: Vec<Observed<'_>>,
    previous: &'i Inventory,
    now: jiff::Timestamp,
) -> Decisions<'i> {
    let new_namespaces: HashSet<&str> = observed
        .iter()
        .filter(|o| is_namespace(&o.object) && matches!(o.live, Live::Absent))
        .map(|o| o.object.name.as_str())
        .collect();
    let new_service_accounts: HashSet<(&str, &str)> = observed
        .iter()
        .filter(|o| is_service_account(&o.object) && matches!(o.live, Live::Absent))
        .map(|o| {
            (
                o.object.namespace.as_deref().unwrap_or_default(),
                o.object.name.as_str(),
            )
        })
        .collect();
    let new_objects = NewInRevision {
        namespaces: new_namespaces,
        service_accounts: new_service_accounts,
    };
    let decided: Vec<Decision> = observed
        .iter()
        .map(|o| decide_one(o, previous.entries.get(&o.object), &new_objects, now))
        .collect();
    drop(new_objects);
    let current: HashSet<&ObjectRef> = observed.iter().map(|o| &o.object).collect();
    let prune = previous
        .entries
        .keys()
        .filter(|object| !current.contains(object))
        .collect();
    drop(current);
    let objects = observed
        .into_iter()
        .map(|o| o.object)
        .zip(decided)
        .collect();
    Decisions { objects, prune }
}

/// What the revision creates that other objects of it may need before
/// the API server accepts them, even in a dry-run.
struct NewInRevision<'a> {
    /// Namespaces (by name).
    namespaces: HashSet<&'a str>,
    /// ServiceAccounts (namespace, name).
    service_accounts: HashSet<(&'a str, &'a str)>,
}

/// The decision for one object, `previous` its inventory entry.
fn decide_one(
    o: &Observed<'_>,
    previous: Option<&InventoryEntry>,
    new: &NewInRevision<'_>,
    now: jiff::Timestamp,
) -> Decision {
    let namespace = o.object.namespace.as_deref();
    let in_new_namespace = namespace.is_some_and(|ns| new.namespaces.contains(ns));
    let account_is_new = o.service_account.as_deref().is_some_and(|sa| {
        new.service_accounts
            .contains(&(namespace.unwrap_or_default(), sa))
    });
    let validation = if account_is_new {
        Validation::AfterSetup
    } else if o.addressable && !in_new_namespace {
        Validation::Early
    } else {
        Validation::Deferred
    };
    match o.live {
        Live::Present {
            break_glass: Some(window),
            ..
        } => match window.open_until(now) {
            Some(until) => Decision::Hold { until },
            None => Decision::Revert(validation),
        },
        Live::Present { .. } if up_to_date(o.hash, o.live, previous) => Decision::Skip,
        Live::Present { .. } => Decision::Change(validation),
        Live::Absent | Live::Unaddressable => Decision::Create(validation),
    }
}

/// Whether the last apply recorded in `previous` still stands: git did not
/// change the object (same hash) and nobody changed it since (same
/// `resourceVersion`, or the same fields owned by gitwarden).
fn up_to_date(hash: &str, live: &Live, previous: Option<&InventoryEntry>) -> bool {
    let (
        Some(entry),
        Live::Present {
            resource_version,
            fields,
            ..
        },
    ) = (previous, live)
    else {
        return false;
    };
    entry.hash == hash
        && ((!entry.resource_version.is_empty() && entry.resource_version == *resource_version)
            || (!entry.fields.is_empty() && entry.fields == *fields))
}

/// Whether `object` is a Namespace.
fn is_namespace(object: &ObjectRef) -> bool {
    object.group.is_empty() && object.kind == "Namespace"
}

fn is_service_account(object: &ObjectRef) -> bool {
    object.group.is_empty() && object.kind == "ServiceAccount"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::break_glass::BreakGlass;
    use kube::core::GroupVersionKind;

    const NOW: &str = "2026-11-23T06:00:00Z";
    const HASH: &str = "sha-of-git";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn config_map(ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            Some(ns),
            name,
        )
    }

    fn namespace(name: &str) -> ObjectRef {
        ObjectRef::new(&GroupVersionKind::gvk("", "v1", "Namespace"), None, name)
    }

    fn present(break_glass: Option<BreakGlass>) -> Live {
        Live::Present {
            resource_version: "42".into(),
            fields: "fields-42".into(),
            break_glass,
        }
    }

    fn window(until: &str) -> BreakGlass {
        BreakGlass {
            keys: vec!["gitwarden.io/break-glass".into()],
            until: until.parse().ok(),
            label: true,
            created: false,
        }
    }

    fn observed<'a>(object: ObjectRef, live: &'a Live) -> Observed<'a> {
        Observed {
            object,
            hash: HASH,
            addressable: !matches!(live, Live::Unaddressable),
            service_account: None,
            live,
        }
    }

    fn of_kind(kind: &str, ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new(&GroupVersionKind::gvk("", "v1", kind), Some(ns), name)
    }

    /// The previous inventory: `objects` as applied at `HASH` and the
    /// state [`present`] reads back.
    fn applied(objects: &[ObjectRef]) -> Inventory {
        Inventory {
            revision: Some("old".into()),
            entries: objects
                .iter()
                .map(|object| {
                    let entry = InventoryEntry {
                        hash: HASH.into(),
                        fields: "fields-42".into(),
                        resource_version: "42".into(),
                        source: String::new(),
                    };
                    (object.clone(), entry)
                })
                .collect(),
        }
    }

    /// The decision for one object alone in its revision.
    fn decision(observed: Observed<'_>, previous: &Inventory) -> Decision {
        decide(vec![observed], previous, now()).objects[0].1
    }

    #[test]
    fn an_absent_object_is_created() {
        let live = Live::Absent;
        let d = decision(observed(config_map("shop", "a"), &live), &applied(&[]));
        assert_eq!(d, Decision::Create(Validation::Early));
    }

    #[test]
    fn a_pod_whose_service_account_is_new_in_the_revision_is_validated_after_setup() {
        let absent = Live::Absent;
        let pod = |sa: &str| Observed {
            service_account: Some(sa.to_string()),
            ..observed(of_kind("Pod", "shop", "worker"), &absent)
        };
        let revision = vec![
            observed(of_kind("ServiceAccount", "shop", "worker"), &absent),
            pod("worker"),
        ];
        let nothing_before = applied(&[]);
        let decided = decide(revision, &nothing_before, now());
        assert_eq!(decided.objects[0].1, Decision::Create(Validation::Early));
        assert_eq!(
            decided.objects[1].1,
            Decision::Create(Validation::AfterSetup)
        );
        // An account that exists already, or lives in another namespace,
        // does not wait.
        let elsewhere = vec![
            observed(of_kind("ServiceAccount", "other", "worker"), &absent),
            pod("worker"),
        ];
        assert_eq!(
            decide(elsewhere, &applied(&[]), now()).objects[1].1,
            Decision::Create(Validation::Early)
        );
        let present = Live::Present {
            resource_version: "7".into(),
            fields: "fields-7".into(),
            break_glass: None,
        };
        let existing = vec![
            observed(of_kind("ServiceAccount", "shop", "worker"), &present),
            pod("worker"),
        ];
        assert_eq!(
            decide(existing, &applied(&[]), now()).objects[1].1,
            Decision::Create(Validation::Early)
        );
    }

    #[test]
    fn an_object_of_a_kind_not_served_yet_is_created_with_deferred_validation() {
        let live = Live::Unaddressable;
        let d = decision(observed(config_map("shop", "a"), &live), &applied(&[]));
        assert_eq!(d, Decision::Create(Validation::Deferred));
    }

    #[test]
    fn a_present_object_as_last_applied_is_skipped() {
        let live = present(None);
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(d, Decision::Skip);
    }

    #[test]
    fn a_present_object_changed_in_git_is_changed() {
        let live = present(None);
        let a = config_map("shop", "a");
        let mut o = observed(a.clone(), &live);
        o.hash = "sha-of-a-new-commit";
        assert_eq!(
            decision(o, &applied(&[a])),
            Decision::Change(Validation::Early)
        );
    }

    #[test]
    fn a_present_object_changed_by_someone_else_is_changed() {
        let live = Live::Present {
            resource_version: "43".into(),
            fields: "fields-43".into(),
            break_glass: None,
        };
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(d, Decision::Change(Validation::Early));
    }

    #[test]
    fn a_new_resource_version_with_gitwardens_fields_unchanged_is_skipped() {
        let live = Live::Present {
            resource_version: "43".into(),
            fields: "fields-42".into(),
            break_glass: None,
        };
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(d, Decision::Skip);
    }

    #[test]
    fn a_present_object_missing_from_the_inventory_is_changed() {
        let live = present(None);
        let d = decision(observed(config_map("shop", "a"), &live), &applied(&[]));
        assert_eq!(d, Decision::Change(Validation::Early));
    }

    #[test]
    fn an_open_break_glass_window_is_held_until_its_end() {
        let live = present(Some(window("2026-11-23T06:05:00Z")));
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(
            d,
            Decision::Hold {
                until: "2026-11-23T06:05:00Z".parse().unwrap()
            }
        );
    }

    #[test]
    fn a_closed_break_glass_window_is_reverted_even_when_up_to_date() {
        let live = present(Some(window("2026-11-23T05:59:59Z")));
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(d, Decision::Revert(Validation::Early));
    }

    #[test]
    fn a_break_glass_window_without_an_end_is_reverted() {
        let live = present(Some(window("soon")));
        let a = config_map("shop", "a");
        let d = decision(observed(a.clone(), &live), &applied(&[a]));
        assert_eq!(d, Decision::Revert(Validation::Early));
    }

    #[test]
    fn an_object_that_left_git_is_a_prune_candidate() {
        let live = present(None);
        let (kept, left) = (config_map("shop", "kept"), config_map("shop", "left"));
        let previous = applied(&[kept.clone(), left.clone()]);
        let decisions = decide(vec![observed(kept, &live)], &previous, now());
        assert_eq!(decisions.prune, vec![&left]);
    }

    #[test]
    fn an_object_in_a_namespace_new_in_the_revision_is_validated_after_it_is_applied() {
        let absent = Live::Absent;
        let objects = vec![
            observed(namespace("new"), &absent),
            observed(config_map("new", "a"), &absent),
            observed(config_map("existing", "b"), &absent),
        ];
        let nothing_applied = applied(&[]);
        let decisions = decide(objects, &nothing_applied, now());
        let decided: Vec<Decision> = decisions.objects.iter().map(|(_, d)| *d).collect();
        assert_eq!(
            decided,
            vec![
                Decision::Create(Validation::Early),
                Decision::Create(Validation::Deferred),
                Decision::Create(Validation::Early),
            ]
        );
    }

    #[test]
    fn an_object_in_a_namespace_that_exists_is_validated_early() {
        let (absent, live) = (Live::Absent, present(None));
        let objects = vec![
            observed(namespace("shop"), &live),
            observed(config_map("shop", "a"), &absent),
        ];
        let nothing_applied = applied(&[]);
        let decisions = decide(objects, &nothing_applied, now());
        assert_eq!(decisions.objects[1].1, Decision::Create(Validation::Early));
    }

    #[test]
    fn decisions_keep_the_order_observed() {
        let live = Live::Absent;
        let names = ["c", "a", "b"];
        let objects = names
            .iter()
            .map(|name| observed(config_map("shop", name), &live))
            .collect();
        let nothing_applied = applied(&[]);
        let decisions = decide(objects, &nothing_applied, now());
        let order: Vec<&str> = decisions
            .objects
            .iter()
            .map(|(object, _)| object.name.as_str())
            .collect();
        assert_eq!(order, names);
    }
}
