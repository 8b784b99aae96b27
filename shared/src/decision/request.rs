//! The facts about an admission request that the decision table asks about,
//! computed once: who, what resource, which object, in scope or not.

use std::collections::BTreeMap;

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use crate::identity::Requester;
use crate::names::{BREAK_GLASS, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::policy::NamespaceScope;

/// A read-only view over an admission request.
pub(super) struct RequestView<'a> {
    /// The request itself.
    pub req: &'a AdmissionRequest<DynamicObject>,
    /// Who is asking.
    pub requester: Requester,
    /// The API group (empty for core).
    pub group: String,
    /// The plural resource name.
    pub resource: String,
}

impl<'a> RequestView<'a> {
    pub fn new(req: &'a AdmissionRequest<DynamicObject>) -> Self {
        Self {
            req,
            requester: Requester::from_user_info(&req.user_info),
            group: req.resource.group.clone(),
            resource: req.resource.resource.clone(),
        }
    }

    /// The subresource, if any (an empty one counts as none).
    pub fn subresource(&self) -> Option<&str> {
        self.req.sub_resource.as_deref().filter(|s| !s.is_empty())
    }

    /// Whether this is a core-group resource named `resource`.
    fn is_core(&self, resource: &str) -> bool {
        self.group.is_empty() && self.resource == resource
    }

    /// The namespace that decides whether the object is in scope; `None`
    /// for cluster-scoped objects. The API server reports a Namespace's own
    /// name as its namespace; it is still cluster-scoped here, so that
    /// relabelling `kube-system` itself is protected.
    pub fn scope_namespace(&self) -> Option<&str> {
        if self.is_core("namespaces") {
            return None;
        }
        self.req.namespace.as_deref().filter(|ns| !ns.is_empty())
    }

    /// The object's name: from the request, or for a CREATE without one from
    /// the object's `name` or `generateName`.
    pub fn name(&self) -> &str {
        if !self.req.name.is_empty() {
            return &self.req.name;
        }
        let meta = self.req.object.as_ref().map(|o| &o.metadata);
        meta.and_then(|m| m.name.as_deref())
            .filter(|n| !n.is_empty())
            .or_else(|| meta.and_then(|m| m.generate_name.as_deref()))
            .unwrap_or("")
    }

    /// The operation as a lower-case verb for messages.
    pub fn verb(&self) -> &'static str {
        match self.req.operation {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Connect => "connect",
        }
    }

    /// Whether this is a DELETE.
    pub fn is_delete(&self) -> bool {
        self.req.operation == Operation::Delete
    }

    /// `<resource>[/<subresource>] "<name>" in namespace "<ns>"`, or
    /// `(cluster-scoped)` instead of the namespace.
    pub fn describe_object(&self) -> String {
        let mut out = self.resource.clone();
        if let Some(sub) = self.subresource() {
            out.push('/');
            out.push_str(sub);
        }
        out.push_str(&format!(" {:?}", self.name()));
        match self.scope_namespace() {
            Some(ns) => out.push_str(&format!(" in namespace {ns:?}")),
            None => out.push_str(" (cluster-scoped)"),
        }
        out
    }

    /// `<kind> <ns>/<name>` (or `<kind> <name>` when cluster-scoped), the
    /// short form used in warnings.
    pub fn short_object(&self) -> String {
        let kind = &self.req.kind.kind;
        match self.scope_namespace() {
            Some(ns) => format!("{kind} {ns}/{}", self.name()),
            None => format!("{kind} {}", self.name()),
        }
    }

    /// Whether the request is in scope: cluster-scoped, in a protected
    /// namespace, or carrying gitwarden's managed-by label before or after
    /// the change (so removing the label does not escape protection).
    ///
    /// For subresources whose object is not the parent (`scale`,
    /// `eviction`), the label cannot be seen without reading the parent, so
    /// only the namespace decides.
    pub fn is_protected(&self, scope: &NamespaceScope) -> bool {
        let in_scope = self.scope_namespace().is_none_or(|ns| scope.protects(ns));
        in_scope || self.managed_by_gitwarden()
    }

    fn managed_by_gitwarden(&self) -> bool {
        [self.req.object.as_ref(), self.req.old_object.as_ref()]
            .into_iter()
            .flatten()
            .any(|object| {
                object
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(MANAGED_BY_LABEL))
                    .is_some_and(|value| value == MANAGED_BY_VALUE)
            })
    }

    /// The service account `(namespace, name)` this request mints a token
    /// for (`CREATE serviceaccounts/token`), if it does.
    pub fn token_request_target(&self) -> Option<(&'a str, &'a str)> {
        let req = self.req;
        let namespace = req.namespace.as_deref().filter(|ns| !ns.is_empty())?;
        (req.operation == Operation::Create
            && req.resource.group.is_empty()
            && req.resource.resource == "serviceaccounts"
            && req.sub_resource.as_deref() == Some("token"))
        .then_some((namespace, req.name.as_str()))
    }

    /// Whether this is a CONNECT (exec, attach, port-forward, proxy).
    pub fn is_connect(&self) -> bool {
        self.req.operation == Operation::Connect
    }

    /// Whether the request carries a break-glass reason annotation (on the
    /// new object, or the live one for DELETE), blank or not.
    pub fn asks_for_break_glass(&self) -> bool {
        self.break_glass_annotations()
            .is_some_and(|annotations| annotations.contains_key(BREAK_GLASS))
    }

    /// The annotations that carry a break-glass request: the new object's
    /// for CREATE and UPDATE, the live object's for DELETE (a DELETE has no
    /// new object, and the window must already be open on the live one).
    pub fn break_glass_annotations(&self) -> Option<&'a BTreeMap<String, String>> {
        let object = match self.req.operation {
            Operation::Create | Operation::Update => self.req.object.as_ref(),
            Operation::Delete => self.req.old_object.as_ref(),
            Operation::Connect => None,
        };
        annotations(object)
    }

    /// The live object's annotations (UPDATE and DELETE).
    pub fn old_annotations(&self) -> Option<&'a BTreeMap<String, String>> {
        annotations(self.req.old_object.as_ref())
    }

    /// Whether the request has a live object (UPDATE, DELETE).
    pub fn has_old_object(&self) -> bool {
        self.req.old_object.is_some()
    }
}

fn annotations(object: Option<&DynamicObject>) -> Option<&BTreeMap<String, String>> {
    object.and_then(|o| o.metadata.annotations.as_ref())
}
