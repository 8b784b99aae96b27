//! deploy/base/webhook-configuration.yaml is the one source of gitwarden's
//! webhook rules and conditions; the URL-based copy (deploy/local, for the
//! demo and the tests), the manifest-based copies (deploy/admission) and the
//! cert-manager overlay's template (cert-manager's controller instead of
//! gitwarden-certs kept off the webhook's path) are rendered from it here. A copy that differs fails the test;
//! `GITWARDEN_BLESS=1` rewrites the copies.

use std::path::Path;

use gitwarden_tests::cluster::repo_root;

const BASE: &str = "deploy/base/webhook-configuration.yaml";
const LOCAL: &str = "deploy/local/webhook-configuration.yaml";
const STATIC_VALIDATING: &str = "deploy/admission/validating/gitwarden.yaml";
const STATIC_MUTATING: &str = "deploy/admission/mutating/gitwarden.yaml";
const CERT_MANAGER: &str = "deploy/overlays/cert-manager/webhook-configuration.yaml";

const CERT_MANAGER_HEADER: &str = "\
# GENERATED from deploy/base/webhook-configuration.yaml (read the comments
# there); GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test e2e deploy_copies
# rewrites it. The template the webhook registers in the cert-manager overlay:
# cert-manager's controller, not gitwarden-certs, renews the serving
# certificate while the webhook cannot serve (gitwarden-system fails closed
# for people), so it is the identity kept off the webhook's path.
";

/// The base's body with cert-manager's controller where gitwarden-certs is
/// kept off the webhook's path.
fn for_cert_manager(body: &str) -> String {
    const CERTS: &str = "'system:serviceaccount:gitwarden-system:gitwarden-certs'";
    const CERT_MANAGER_USER: &str = "'system:serviceaccount:cert-manager:cert-manager'";
    assert_eq!(
        body.matches(CERTS).count(),
        3,
        "gitwarden-certs is kept off each validating webhook's path"
    );
    format!(
        "{CERT_MANAGER_HEADER}{}",
        body.replace(CERTS, CERT_MANAGER_USER)
    )
}

const LOCAL_HEADER: &str = "\
# GENERATED from deploy/base/webhook-configuration.yaml (read the comments
# there); GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test e2e deploy_copies
# rewrites it. Webhook configurations for a webhook running outside the
# cluster (the local demo and the end-to-end tests): the API server calls
# ${WEBHOOK_URL}. Rendered by substituting ${WEBHOOK_URL} and ${CA_BUNDLE}
# (base64 PEM).
";

const STATIC_HEADER: &str = "\
# GENERATED from deploy/base/webhook-configuration.yaml (read the comments
# there); GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test e2e deploy_copies
# rewrites it. A manifest-based (static) configuration for kube-apiserver
# 1.36+, loaded from this directory (see ../admission-config.yaml). The name
# ends in .static.k8s.io; clientConfig is a URL (static manifests allow no
# Service reference). Rendered with envsubst:
#   WEBHOOK_URL  how kube-apiserver reaches the webhook, without a path. In a
#                cluster: the webhook Service's pinned ClusterIP, e.g.
#                https://10.96.0.250 (see ../service-cluster-ip.yaml).
#                Tests: https://127.0.0.1:PORT.
#   CA_BUNDLE    base64 of the CA that signed the webhook's serving
#                certificate, which must name WEBHOOK_URL's host.
";

/// The base without its leading comment block.
fn body(base: &str) -> &str {
    let start = base
        .find("apiVersion:")
        .expect("the base has an apiVersion line");
    &base[start..]
}

/// Every `clientConfig.service` block becomes `url` + `caBundle`.
fn with_url_client_config(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() == "service:" && i > 0 && lines[i - 1].trim() == "clientConfig:" {
            let indent = &line[..line.len() - line.trim_start().len()];
            let block: Vec<&str> = lines[i + 1..i + 5].iter().map(|l| l.trim()).collect();
            assert_eq!(block[0], "name: gitwarden-webhook", "{block:?}");
            assert_eq!(block[1], "namespace: gitwarden-system", "{block:?}");
            assert_eq!(block[3], "port: 443", "{block:?}");
            let path = block[2].strip_prefix("path: ").expect("a path line");
            out.push(format!("{indent}url: \"${{WEBHOOK_URL}}{path}\""));
            out.push(format!("{indent}caBundle: \"${{CA_BUNDLE}}\""));
            i += 5;
            continue;
        }
        out.push(line.to_owned());
        i += 1;
    }
    out.join("\n") + "\n"
}

/// The document of `kind` from a rendered multi-document text, renamed for
/// the manifest-based configuration.
fn static_document(rendered: &str, kind: &str) -> String {
    let doc = rendered
        .split("\n---\n")
        .find(|doc| doc.contains(&format!("kind: {kind}\n")))
        .unwrap_or_else(|| panic!("no {kind} in the base"));
    let renamed = doc.replacen(
        "  name: gitwarden\n",
        "  name: gitwarden.static.k8s.io\n",
        1,
    );
    assert_ne!(renamed, doc, "the {kind} is named gitwarden");
    let mut text = format!("{STATIC_HEADER}{renamed}");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn check(root: &Path, path: &str, expected: &str) -> Option<String> {
    let file = root.join(path);
    if std::env::var_os("GITWARDEN_BLESS").is_some() {
        std::fs::write(&file, expected).unwrap();
        return None;
    }
    let actual = std::fs::read_to_string(&file).unwrap_or_default();
    (actual != expected).then(|| format!("{path} is not rendered from {BASE}"))
}

#[test]
fn the_local_and_static_webhook_configurations_are_rendered_from_the_base() {
    let root = repo_root();
    let base = std::fs::read_to_string(root.join(BASE)).unwrap();
    let rendered = with_url_client_config(body(&base));
    let stale: Vec<String> = [
        (LOCAL, format!("{LOCAL_HEADER}{rendered}")),
        (
            STATIC_VALIDATING,
            static_document(&rendered, "ValidatingWebhookConfiguration"),
        ),
        (
            STATIC_MUTATING,
            static_document(&rendered, "MutatingWebhookConfiguration"),
        ),
        (CERT_MANAGER, for_cert_manager(body(&base))),
    ]
    .iter()
    .filter_map(|(path, expected)| check(&root, path, expected))
    .collect();
    assert!(
        stale.is_empty(),
        "{}; run GITWARDEN_BLESS=1 cargo test -p gitwarden-tests --test e2e deploy_copies",
        stale.join("; ")
    );
}

/// The identities the webhook configurations keep off the webhook's path
/// are exactly the policy's built-in exempt identities: a name missing from
/// the conditions costs only load, but a name there and not in the policy
/// would be an exemption nobody reviewed.
#[test]
fn the_control_plane_condition_names_exactly_the_builtin_exempt_identities() {
    let base = std::fs::read_to_string(repo_root().join(BASE)).unwrap();
    let builtin = gitwarden_shared::policy::ExemptIdentities::builtin();
    let expected: Vec<&str> = builtin.users.iter().map(|u| u.as_str()).collect();
    let mut conditions = 0;
    for expression in base.split("- name: not-control-plane").skip(1) {
        let list = &expression[expression.find('[').unwrap() + 1..expression.find(']').unwrap()];
        let named: Vec<&str> = list
            .split(',')
            .map(|s| s.trim().trim_matches('\''))
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(named, expected);
        assert!(expression.contains("'system:nodes' in request.userInfo.groups"));
        conditions += 1;
    }
    assert_eq!(conditions, 3, "one condition per validating entry");
}
