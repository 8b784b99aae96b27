//! Well-known names: labels, annotations, identities and objects.
//!
//! This is the single place these strings are spelled. The agent stamps them,
//! the webhook reads them and the deployment manifests must agree with both, so
//! every crate imports them from here instead of repeating a literal that could
//! drift.

/// The server-side-apply field manager the agent applies with.
///
/// One stable manager name lets the agent force-own the fields that git
/// declares and recognise its own writes in `managedFields`.
pub const FIELD_MANAGER: &str = "gitwarden";

/// The label the agent sets on every object it applies.
///
/// The webhook treats any object carrying it (before or after the change) as
/// protected, even in a namespace the policy leaves unprotected, so that git's
/// objects cannot be edited by moving them out of scope.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The value of [`MANAGED_BY_LABEL`] that marks an object as gitwarden's.
pub const MANAGED_BY_VALUE: &str = "gitwarden";

/// Annotation a human sets to open a break-glass window; its value is the
/// reason, which is required and recorded in the audit log.
pub const BREAK_GLASS: &str = "gitwarden.io/break-glass";

/// Annotation a human may set to ask for a break-glass duration (for example
/// `30m`); the policy caps it, and the policy's default applies when absent.
pub const BREAK_GLASS_TTL: &str = "gitwarden.io/break-glass-ttl";

/// Annotation stamped by the mutating webhook: who opened the break-glass
/// window. Humans must not set it; the webhook checks that they did not.
pub const BREAK_GLASS_BY: &str = "gitwarden.io/break-glass-by";

/// Annotation stamped by the mutating webhook: when the break-glass window
/// opened (RFC 3339).
pub const BREAK_GLASS_AT: &str = "gitwarden.io/break-glass-at";

/// Annotation stamped by the mutating webhook: when the break-glass window
/// closes (RFC 3339). After it the agent reverts the object to git.
pub const BREAK_GLASS_UNTIL: &str = "gitwarden.io/break-glass-until";

/// Label the mutating webhook puts on every object created or changed under a
/// break-glass window, next to the `-by`/`-at`/`-until` stamps.
///
/// Annotations cannot be selected on, labels can: with this label the agent
/// finds, with one label-selected list per kind, the objects a human created
/// under break-glass that git does not contain, and deletes them once their
/// window closes. The agent removes it again when it reverts an object to git.
/// Same key as the [`BREAK_GLASS`] annotation; labels and annotations are
/// separate maps.
pub const BREAK_GLASS_LABEL: &str = "gitwarden.io/break-glass";

/// The value of [`BREAK_GLASS_LABEL`] on an object a break-glass request
/// created: git does not know it, so the agent deletes it once the window
/// closes. It stays `created` through later break-glass changes and new
/// windows, so extending an emergency never turns its objects permanent.
pub const BREAK_GLASS_LABEL_CREATED: &str = "created";

/// The value of [`BREAK_GLASS_LABEL`] on an object that existed before a
/// break-glass request changed it: outside git, the agent leaves it in place
/// once the window closes (it was not the emergency's to remove) and only
/// takes the label off.
pub const BREAK_GLASS_LABEL_CHANGED: &str = "changed";

/// Annotation, written in git, that tells the agent never to prune an object
/// when it leaves git (for example a namespace holding data).
pub const PRUNE: &str = "gitwarden.io/prune";

/// The value of [`PRUNE`] that disables pruning.
pub const PRUNE_DISABLED: &str = "disabled";

/// Annotation, written in git, that lets the agent delete and create an
/// object again when git changes a field the API server will not change in
/// place (a Job's pod template, a Service's clusterIP, a selector), as Flux's
/// `kustomize.toolkit.fluxcd.io/force: enabled` does. Without it such a
/// change fails the revision, naming the object.
pub const FORCE: &str = "gitwarden.io/force";

/// The one value of [`FORCE`] that enables it.
pub const FORCE_ENABLED: &str = "enabled";

/// Whether annotations let the agent recreate their object when an immutable
/// field changes (`gitwarden.io/force: enabled`).
pub fn force_enabled(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotated(annotations, FORCE, FORCE_ENABLED)
}

/// Whether `annotations` hold `key: value`.
fn annotated(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> bool {
    annotations
        .and_then(|annotations| annotations.get(key))
        .is_some_and(|found| found == value)
}

/// Annotation on a Secret in git that may keep plain-text values (an empty
/// placeholder another controller fills, a public CA bundle): the agent
/// refuses every other Secret whose `data` or `stringData` is not
/// SOPS-encrypted.
pub const PLAINTEXT_SECRET: &str = "gitwarden.io/plaintext-secret";

/// The one value of [`PLAINTEXT_SECRET`] that allows it.
pub const PLAINTEXT_SECRET_ALLOWED: &str = "allowed";

/// Whether annotations ask never to prune their object
/// (`gitwarden.io/prune: disabled`): the one reading of that rule, for git's
/// manifests, live objects and break-glass leftovers alike.
pub fn prune_disabled(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotated(annotations, PRUNE, PRUNE_DISABLED)
}

/// Kubernetes' own namespace, where the controllers' service accounts live.
pub const KUBE_SYSTEM: &str = "kube-system";

/// The namespace the agent and the webhook run in.
pub const SYSTEM_NAMESPACE: &str = "gitwarden-system";

/// The agent's service account name in [`SYSTEM_NAMESPACE`].
pub const AGENT_SERVICE_ACCOUNT: &str = "gitwarden-agent";

/// The agent's username as the API server reports it; the default (and
/// normally the only) identity allowed to write protected objects.
pub const AGENT_USER: &str = "system:serviceaccount:gitwarden-system:gitwarden-agent";

/// The webhook's service account name in [`SYSTEM_NAMESPACE`].
pub const WEBHOOK_SERVICE_ACCOUNT: &str = "gitwarden-webhook";

/// The group whose members may make break-glass changes when the policy does
/// not name other groups. It is not a built-in group: granting it is an
/// explicit, reviewable act (a RoleBinding, an IdP group mapping).
pub const DEFAULT_BREAK_GLASS_GROUP: &str = "gitwarden:break-glass";

/// The ConfigMap (in [`SYSTEM_NAMESPACE`]) holding the admission policy. It
/// lives in git like everything else, so changing the policy is a commit.
pub const POLICY_CONFIGMAP: &str = "gitwarden-policy";

/// The key in [`POLICY_CONFIGMAP`] whose value is the policy YAML.
pub const POLICY_KEY: &str = "policy.yaml";

/// Prefix of every service account's username
/// (`system:serviceaccount:<namespace>:<name>`).
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// The built-in group every node (kubelet) belongs to. Kubelets must keep
/// writing node and pod status and minting pod tokens, so this group is exempt
/// by default and is the only one allowed to mint the agent's token.
pub const NODES_GROUP: &str = "system:nodes";

/// The built-in group that bypasses RBAC. It must never be exempt from
/// gitwarden: it is exactly the cluster-admin credential gitwarden exists to
/// keep out of the write path.
pub const MASTERS_GROUP: &str = "system:masters";

/// The name of gitwarden's Validating- and MutatingWebhookConfiguration
/// (`deploy/base/webhook-configuration.yaml`); `gitwarden-certs` injects the
/// CA bundle into it and `gitwarden-doctor` checks it.
pub const WEBHOOK_CONFIGURATION: &str = "gitwarden";

/// The ConfigMap (in [`SYSTEM_NAMESPACE`]) holding the template of
/// gitwarden's webhook configurations. The webhook registers them from it
/// once it is ready (so a broken install never locks the cluster), and the
/// agent keeps the live ones equal to it, like any admission object of git.
pub const WEBHOOK_REGISTRATION_CONFIGMAP: &str = "gitwarden-webhook-configurations";

/// The key in [`WEBHOOK_REGISTRATION_CONFIGMAP`] whose value is the template
/// (the file `deploy/base/webhook-configuration.yaml`, as kustomize's
/// configMapGenerator names it).
pub const WEBHOOK_REGISTRATION_KEY: &str = "webhook-configuration.yaml";

/// The field manager of the webhook's own registration writes.
pub const WEBHOOK_FIELD_MANAGER: &str = "gitwarden-webhook";

/// The Secret the webhook pods mount: serving certificate, key and CA
/// bundle (`deploy/base/webhook.yaml`).
pub const WEBHOOK_TLS_SECRET: &str = "gitwarden-webhook-tls";

/// The Secret holding the webhook CA's key and the bundle.
pub const WEBHOOK_CA_SECRET: &str = "gitwarden-webhook-ca";

/// The value of `app.kubernetes.io/name` on every object gitwarden ships.
pub const APP_NAME: &str = "gitwarden";

/// Request header of the agent's `GET /status`: with the value
/// [`STATUS_SCOPE_REPLICA`] the replica answers for itself. Without it a
/// standby asks the leader (with this header, so the leader never forwards
/// again) and answers with the leader's status: the Service sends callers to
/// any replica, and only the leader's status says what the cluster runs.
pub const STATUS_SCOPE_HEADER: &str = "x-gitwarden-status-scope";

/// The value of [`STATUS_SCOPE_HEADER`] that asks one replica about itself.
pub const STATUS_SCOPE_REPLICA: &str = "replica";

/// Response header of the agent's `GET /status`: the pod whose status the
/// body is (the leader's, when a standby forwarded the request).
pub const STATUS_ANSWERED_BY_HEADER: &str = "x-gitwarden-answered-by";

/// Response header of the agent's `GET /status`: the standby pod that
/// forwarded the request to the leader.
pub const STATUS_FORWARDED_BY_HEADER: &str = "x-gitwarden-forwarded-by";

/// Response header of the agent's `GET /status`: a standby could not reach
/// the leader (why, in a few words) and answers with its own status.
pub const STATUS_LEADER_UNREACHABLE_HEADER: &str = "x-gitwarden-leader-unreachable";

/// Request header of the webhook's `GET /audit`: with the value
/// [`AUDIT_SCOPE_REPLICA`] the replica answers from its own log only.
/// Without it a replica also asks its peers (with this header, so a peer
/// never asks further) and merges their records: each replica keeps its own
/// log, and the Service sends callers to any of them.
pub const AUDIT_SCOPE_HEADER: &str = "x-gitwarden-audit-scope";

/// The value of [`AUDIT_SCOPE_HEADER`] that asks one replica for its own records.
pub const AUDIT_SCOPE_REPLICA: &str = "replica";

/// Response header of the webhook's `GET /audit`: the replicas whose records
/// the answer lacks and why, one `replica: why` per replica, joined by `; `.
/// Absent when every replica answered.
pub const AUDIT_MISSING_HEADER: &str = "x-gitwarden-audit-missing";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_user_is_the_agent_service_account_in_the_system_namespace() {
        assert_eq!(
            AGENT_USER,
            format!("{SERVICE_ACCOUNT_USER_PREFIX}{SYSTEM_NAMESPACE}:{AGENT_SERVICE_ACCOUNT}")
        );
    }

    #[test]
    fn break_glass_annotations_share_the_gitwarden_prefix() {
        for name in [
            BREAK_GLASS_TTL,
            BREAK_GLASS_BY,
            BREAK_GLASS_AT,
            BREAK_GLASS_UNTIL,
        ] {
            assert!(name.starts_with(BREAK_GLASS), "{name}");
        }
    }
}
