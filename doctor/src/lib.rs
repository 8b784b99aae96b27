//! `gitwarden-doctor`: who can still bypass git, and is the rest sound?
//!
//! gitwarden makes git the only write path, but some doors stay open by the
//! nature of Kubernetes: whoever may impersonate the agent, mint its token,
//! exec into its pod or delete the webhook configuration (which no webhook
//! sees) can go around git. `doctor` reads RBAC with an admin kubeconfig and
//! names every subject holding such a right and the binding that grants it,
//! then checks the webhook configurations (failure policy, selectors, rules),
//! their CA bundle against the certificate the webhook actually serves, the
//! policy, who holds the agent's leader Lease, and optionally the agent's
//! status. Critical findings make the
//! command exit 1, so it can gate a pipeline.

pub mod agent_status;
pub mod lease;
pub mod policy;
pub mod rbac;
pub mod registration;
pub mod report;
pub mod selector;
pub mod serving_cert;
pub mod tls;
pub mod webhook_config;

use std::time::Duration;

use kube::Client;

pub use crate::rbac::hatches::Protected;
pub use crate::report::{Finding, Report, Severity};

/// What `doctor` checks and how strictly.
#[derive(Debug, Clone)]
pub struct Options {
    /// The names of what gitwarden protects (namespace, agent, webhook, policy).
    pub protected: Protected,
    /// The agent's HTTP address; its /status is checked when given.
    pub agent_url: Option<String>,
    /// The bearer token doctor presents to the agent's /status (its own
    /// kubeconfig user's), which an agent run with `--status-auth
    /// kubernetes` reviews; `None` when the user has none.
    pub agent_token: Option<String>,
    /// Warn when a certificate expires within this.
    pub cert_warn_before: Duration,
    /// Warn when the agent's last successful sync is older than this.
    pub agent_max_age: Duration,
    /// Timeout of each network probe (TLS handshake, agent status).
    pub timeout: Duration,
    /// The agent's leader Lease: who holds it, and whether it is the agent.
    pub lease: lease::LeaseTarget,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protected: Protected::default(),
            agent_url: None,
            agent_token: None,
            cert_warn_before: Duration::from_secs(30 * 86_400),
            agent_max_age: Duration::from_secs(10 * 60),
            timeout: Duration::from_secs(5),
            lease: lease::LeaseTarget {
                namespace: gitwarden_shared::names::SYSTEM_NAMESPACE.to_owned(),
                name: "gitwarden-agent".to_owned(),
                agent_service_account: gitwarden_shared::names::AGENT_SERVICE_ACCOUNT.to_owned(),
                max_expired: Duration::from_secs(5 * 60),
            },
        }
    }
}

/// Runs every check against the cluster `client` talks to. Never fails: what
/// cannot be checked is itself a finding.
#[tracing::instrument(skip_all)]
pub async fn diagnose(client: &Client, options: &Options) -> Report {
    let p = &options.protected;
    let (policy, policy_finding) =
        policy::read(client, &p.system_namespace, &p.policy_configmap).await;
    let mut findings = rbac::check(client, p, &policy).await;
    let (configs, webhook_findings) =
        webhook_config::check(client, &p.webhook_configuration, &p.system_namespace).await;
    findings.extend(webhook_findings);
    if configs.validating.is_none() {
        findings.push(registration::why_unregistered(client, &p.system_namespace).await);
    }
    let (endpoints, problems) = serving_cert::endpoints(&configs.entries());
    findings.extend(problems);
    let settings = serving_cert::CertSettings {
        warn_before: options.cert_warn_before,
        timeout: options.timeout,
    };
    for endpoint in &endpoints {
        findings.extend(serving_cert::check(client, endpoint, settings).await);
    }
    findings.push(policy_finding);
    findings.push(lease::check(client, &options.lease).await);
    if let Some(url) = &options.agent_url {
        let probe = agent_status::Probe {
            url,
            token: options.agent_token.as_deref(),
            timeout: options.timeout,
        };
        findings.extend(agent_status::check(&probe, options.agent_max_age).await);
    }
    Report::new(findings)
}
