//! Deciding what to renew: a pure function from what is stored and what is
//! wanted to a plan, so every rule is unit tested without a cluster.
//!
//! Rules:
//! - The CA is created when none is stored (the CA Secret is empty: shipped
//!   by `deploy/base`, not issued yet), and renewed when it expires within
//!   `ca_renew_before`. A renewed CA's predecessor stays in the bundle until
//!   it expires ([`crate::bundle::merge`]).
//! - A stored CA that cannot be used (unreadable, not a CA, key missing or
//!   not matching, a bundle without a CA) is an error, [`UnusableCa`], never
//!   replaced: the key may be one someone put there on purpose, and a new CA
//!   silently changes what the API server trusts. Emptying the Secret is
//!   how a new CA is asked for.
//! - The serving certificate is issued again when it is missing or
//!   unreadable, its key does not match, it is not accepted by a TLS client
//!   trusting only the current CA for every wanted name (wrong CA, missing
//!   name, expired), it carries names no longer wanted, or it expires within
//!   `renew_before`. A new CA always means a new serving certificate.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::inspect::{CertInfo, format_time};
use crate::verify::{key_matches, serves_for};

/// The names the serving certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// DNS names (the Service's `NAME.NAMESPACE.svc` and `.svc.cluster.local`, plus extras).
    pub dns_names: Vec<String>,
    /// IP addresses (for a webhook reached at an address, as in local runs).
    pub ips: Vec<IpAddr>,
}

/// How long before expiry each certificate is renewed, and how long new ones last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Renew the serving certificate when it expires within this.
    pub renew_before: Duration,
    /// Renew the CA when it expires within this; also how long the old CA
    /// overlaps the new one in the bundle.
    pub ca_renew_before: Duration,
    /// Validity of a new serving certificate.
    pub validity: Duration,
    /// Validity of a new CA.
    pub ca_validity: Duration,
}

impl Lifetimes {
    /// Refuses settings under which every run would renew again (a window at
    /// least as long as the validity), which would churn Secrets and pods daily.
    pub fn check(&self) -> Result<(), String> {
        if self.validity <= self.renew_before {
            return Err(format!(
                "--validity ({}) must be longer than --renew-before ({}), or every run renews the serving certificate",
                humantime::format_duration(self.validity),
                humantime::format_duration(self.renew_before)
            ));
        }
        if self.ca_validity <= self.ca_renew_before {
            return Err(format!(
                "--ca-validity ({}) must be longer than --ca-renew-before ({}), or every run renews the CA",
                humantime::format_duration(self.ca_validity),
                humantime::format_duration(self.ca_renew_before)
            ));
        }
        Ok(())
    }
}

/// The PEM texts currently stored, as read from the two Secrets.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The CA certificate (CA Secret, `tls.crt`).
    pub ca_cert: Option<String>,
    /// The CA key (CA Secret, `tls.key`).
    pub ca_key: Option<String>,
    /// The published bundle (CA Secret, `ca.crt`).
    pub bundle: Option<String>,
    /// The serving certificate (TLS Secret, `tls.crt`).
    pub serving_cert: Option<String>,
    /// The serving key (TLS Secret, `tls.key`).
    pub serving_key: Option<String>,
}

/// What to do with one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It is fine: keep it.
    Keep,
    /// Make one where there is none usable (the reason says why).
    Create(String),
    /// Replace a working one that is due (the reason says why).
    Renew(String),
}

impl Step {
    /// Whether something new is made.
    pub fn changes(&self) -> bool {
        !matches!(self, Step::Keep)
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            Step::Keep => "kept".into(),
            Step::Create(why) => format!("created ({why})"),
            Step::Renew(why) => format!("renewed ({why})"),
        }
    }
}

/// The decision for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What happens to the CA.
    pub ca: Step,
    /// What happens to the serving certificate.
    pub serving: Step,
    /// CA certificates that stay trusted beside the current CA (the stored
    /// bundle and, when the CA is renewed, the old CA); expired ones are
    /// pruned when the bundle is built.
    pub carry_over: Vec<CertInfo>,
}

/// A CA is stored but cannot sign: refused rather than replaced (see the
/// module docs). The text says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnusableCa(pub String);

/// Decides what to renew (see the module docs for the rules).
pub fn plan(
    stored: &Stored,
    wanted: &Wanted,
    lifetimes: &Lifetimes,
    now: SystemTime,
) -> Result<Plan, UnusableCa> {
    let mut carry_over: Vec<CertInfo> = stored
        .bundle
        .as_deref()
        .and_then(|b| CertInfo::all_from_pem(b).ok())
        .unwrap_or_default();
    let (ca, current_ca) = ca_step(stored, lifetimes, now)?;
    if let (Step::Renew(_), Some(old)) = (&ca, &current_ca) {
        carry_over.insert(0, old.clone());
    }
    let serving = match (&ca, &current_ca) {
        (Step::Keep, Some(current)) => serving_step(stored, current, wanted, lifetimes, now),
        (Step::Create(_), _) if stored.serving_cert.is_none() => {
            Step::Create("no serving certificate stored".into())
        }
        _ => Step::Renew("the CA is new".into()),
    };
    Ok(Plan {
        ca,
        serving,
        carry_over,
    })
}

fn ca_step(
    stored: &Stored,
    lifetimes: &Lifetimes,
    now: SystemTime,
) -> Result<(Step, Option<CertInfo>), UnusableCa> {
    let (cert, key) = match (stored.ca_cert.as_deref(), stored.ca_key.as_deref()) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if stored.bundle.is_none() => {
            return Ok((Step::Create("no CA stored".into()), None));
        }
        (None, None) => {
            return Err(UnusableCa(
                "it holds a bundle (ca.crt) but no CA (tls.crt, tls.key)".into(),
            ));
        }
        (Some(_), None) => return Err(UnusableCa("its CA key (tls.key) is missing".into())),
        (None, Some(_)) => {
            return Err(UnusableCa("its CA certificate (tls.crt) is missing".into()));
        }
    };
    let info = CertInfo::from_pem(cert)
        .map_err(|e| UnusableCa(format!("its CA certificate (tls.crt) is unreadable: {e}")))?;
    if !info.is_ca {
        return Err(UnusableCa(
            "its CA certificate (tls.crt) is not a CA (basicConstraints)".into(),
        ));
    }
    if !key_matches(&info, key) {
        return Err(UnusableCa(
            "its CA key (tls.key) does not belong to its certificate (tls.crt)".into(),
        ));
    }
    let step = due(&info, lifetimes.ca_renew_before, "--ca-renew-before", now);
    Ok((step, Some(info)))
}

fn serving_step(
    stored: &Stored,
    ca: &CertInfo,
    wanted: &Wanted,
    lifetimes: &Lifetimes,
    now: SystemTime,
) -> Step {
    let Some(cert) = stored.serving_cert.as_deref() else {
        return Step::Create("no serving certificate stored".into());
    };
    let info = match CertInfo::from_pem(cert) {
        Ok(info) => info,
        Err(e) => return Step::Create(format!("stored serving certificate unreadable: {e}")),
    };
    if !stored
        .serving_key
        .as_deref()
        .is_some_and(|key| key_matches(&info, key))
    {
        return Step::Create("stored serving key missing or not matching".into());
    }
    if let Err(why) = serves_for(
        &info,
        std::slice::from_ref(ca),
        &wanted.dns_names,
        &wanted.ips,
        now,
    ) {
        return Step::Renew(why);
    }
    let extra_names: Vec<&String> = info
        .dns_names
        .iter()
        .filter(|n| !wanted.dns_names.contains(n))
        .collect();
    let extra_ips: Vec<&IpAddr> = info
        .ips
        .iter()
        .filter(|i| !wanted.ips.contains(i))
        .collect();
    if !extra_names.is_empty() || !extra_ips.is_empty() {
        return Step::Renew(format!(
            "carries names no longer wanted: {extra_names:?} {extra_ips:?}"
        ));
    }
    due(&info, lifetimes.renew_before, "--renew-before", now)
}

/// Renew when the certificate expires within `window` of `now`.
fn due(info: &CertInfo, window: Duration, flag: &str, now: SystemTime) -> Step {
    let not_after = info.validity.not_after;
    if not_after <= now {
        return Step::Renew(format!("expired at {}", format_time(not_after)));
    }
    if not_after <= now + window {
        return Step::Renew(format!(
            "expires at {}, within {flag} {}",
            format_time(not_after),
            humantime::format_duration(window)
        ));
    }
    Step::Keep
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::CertificateAuthority;

    const HOUR: Duration = Duration::from_secs(3600);

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            renew_before: HOUR,
            ca_renew_before: 10 * HOUR,
            validity: 4 * HOUR,
            ca_validity: 100 * HOUR,
        }
    }

    fn wanted() -> Wanted {
        Wanted {
            dns_names: vec!["w.ns.svc".into(), "w.ns.svc.cluster.local".into()],
            ips: vec![],
        }
    }

    fn stored_with(ca: &CertificateAuthority, serving_validity: Duration) -> Stored {
        let names: Vec<&str> = ["w.ns.svc", "w.ns.svc.cluster.local"].into();
        let serving = ca
            .issue_serving_cert(&names, &[], serving_validity)
            .unwrap();
        Stored {
            ca_cert: Some(ca.cert_pem().to_string()),
            ca_key: Some(ca.key_pem()),
            bundle: Some(ca.cert_pem().to_string()),
            serving_cert: Some(serving.cert_pem),
            serving_key: Some(serving.key_pem),
        }
    }

    #[test]
    fn nothing_stored_creates_both() {
        let plan = plan(
            &Stored::default(),
            &wanted(),
            &lifetimes(),
            SystemTime::now(),
        )
        .unwrap();
        assert!(matches!(plan.ca, Step::Create(_)), "{:?}", plan.ca);
        assert!(
            matches!(plan.serving, Step::Create(_)),
            "{:?}",
            plan.serving
        );
        assert!(plan.carry_over.is_empty());
    }

    #[test]
    fn valid_certificates_outside_the_windows_are_kept() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let plan = plan(
            &stored_with(&ca, 4 * HOUR),
            &wanted(),
            &lifetimes(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(plan.ca, Step::Keep);
        assert_eq!(plan.serving, Step::Keep);
    }

    #[test]
    fn a_serving_certificate_expiring_within_the_window_is_renewed_under_the_same_ca() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let plan = plan(
            &stored_with(&ca, HOUR / 2),
            &wanted(),
            &lifetimes(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(plan.ca, Step::Keep);
        let Step::Renew(why) = &plan.serving else {
            panic!("{:?}", plan.serving)
        };
        assert!(why.contains("--renew-before"), "{why}");
    }

    #[test]
    fn an_expired_serving_certificate_is_renewed() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let stored = stored_with(&ca, 2 * HOUR);
        let later = SystemTime::now() + 3 * HOUR;
        let plan = plan(&stored, &wanted(), &lifetimes(), later).unwrap();
        assert!(matches!(plan.serving, Step::Renew(_)), "{:?}", plan.serving);
    }

    #[test]
    fn a_ca_expiring_within_its_window_is_renewed_and_carried_over() {
        let ca = CertificateAuthority::generate("ca", 5 * HOUR).unwrap();
        let plan = plan(
            &stored_with(&ca, 4 * HOUR),
            &wanted(),
            &lifetimes(),
            SystemTime::now(),
        )
        .unwrap();
        assert!(matches!(plan.ca, Step::Renew(_)), "{:?}", plan.ca);
        assert!(matches!(plan.serving, Step::Renew(_)), "{:?}", plan.serving);
        let old = CertInfo::from_pem(ca.cert_pem()).unwrap();
        assert_eq!(plan.carry_over[0].der, old.der);
    }

    #[test]
    fn a_serving_certificate_from_another_ca_is_renewed() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let other = CertificateAuthority::generate("other", 100 * HOUR).unwrap();
        let mut stored = stored_with(&other, 4 * HOUR);
        stored.ca_cert = Some(ca.cert_pem().into());
        stored.ca_key = Some(ca.key_pem());
        let plan = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap();
        assert_eq!(plan.ca, Step::Keep);
        assert!(matches!(plan.serving, Step::Renew(_)), "{:?}", plan.serving);
    }

    #[test]
    fn a_new_name_or_a_dropped_name_renews_the_serving_certificate() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let stored = stored_with(&ca, 4 * HOUR);
        let mut more = wanted();
        more.dns_names.push("extra.example".into());
        let plan_more = plan(&stored, &more, &lifetimes(), SystemTime::now()).unwrap();
        let Step::Renew(why) = &plan_more.serving else {
            panic!("{:?}", plan_more.serving)
        };
        assert!(why.contains("extra.example"), "{why}");
        let fewer = Wanted {
            dns_names: vec!["w.ns.svc".into()],
            ips: vec![],
        };
        let plan_fewer = plan(&stored, &fewer, &lifetimes(), SystemTime::now()).unwrap();
        let Step::Renew(why) = &plan_fewer.serving else {
            panic!("{:?}", plan_fewer.serving)
        };
        assert!(why.contains("no longer wanted"), "{why}");
    }

    #[test]
    fn a_ca_key_not_matching_its_certificate_is_refused_not_replaced() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let other = CertificateAuthority::generate("other", 100 * HOUR).unwrap();
        let mut stored = stored_with(&ca, 4 * HOUR);
        stored.ca_key = Some(other.key_pem());
        let err = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap_err();
        assert!(err.0.contains("does not belong"), "{err}");
    }

    #[test]
    fn a_stored_ca_that_cannot_be_used_is_refused_whatever_is_wrong() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let serving = ca.issue_serving_cert(&["w.ns.svc"], &[], 4 * HOUR).unwrap();
        let good = stored_with(&ca, 4 * HOUR);
        let cases: [(&str, Stored); 5] = [
            (
                "unreadable",
                Stored {
                    ca_cert: Some("garbage".into()),
                    ..good.clone()
                },
            ),
            (
                "not a CA",
                Stored {
                    ca_cert: Some(serving.cert_pem.clone()),
                    ca_key: Some(serving.key_pem.clone()),
                    ..good.clone()
                },
            ),
            (
                "key (tls.key) is missing",
                Stored {
                    ca_key: None,
                    ..good.clone()
                },
            ),
            (
                "certificate (tls.crt) is missing",
                Stored {
                    ca_cert: None,
                    ..good.clone()
                },
            ),
            (
                "no CA",
                Stored {
                    ca_cert: None,
                    ca_key: None,
                    ..good.clone()
                },
            ),
        ];
        for (why, stored) in cases {
            let err = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap_err();
            assert!(err.0.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn empty_secrets_are_a_first_issue_of_both() {
        // What `rotate` reads from the Secrets deploy/base ships: no data.
        let empty = k8s_openapi::api::core::v1::Secret::default();
        let stored = crate::secrets::stored(Some(&empty), Some(&empty));
        let plan = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap();
        assert_eq!(plan.ca, Step::Create("no CA stored".into()));
        assert_eq!(
            plan.serving,
            Step::Create("no serving certificate stored".into())
        );
        assert!(plan.carry_over.is_empty());
    }

    #[test]
    fn an_emptied_ca_secret_beside_a_serving_certificate_makes_a_new_ca_and_certificate() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let stored = Stored {
            ca_cert: None,
            ca_key: None,
            bundle: None,
            ..stored_with(&ca, 4 * HOUR)
        };
        let plan = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap();
        assert_eq!(plan.ca, Step::Create("no CA stored".into()));
        assert_eq!(plan.serving, Step::Renew("the CA is new".into()));
    }

    #[test]
    fn a_serving_key_not_matching_is_replaced() {
        let ca = CertificateAuthority::generate("ca", 100 * HOUR).unwrap();
        let mut stored = stored_with(&ca, 4 * HOUR);
        stored.serving_key = Some(ca.key_pem());
        let plan = plan(&stored, &wanted(), &lifetimes(), SystemTime::now()).unwrap();
        assert!(
            matches!(plan.serving, Step::Create(_)),
            "{:?}",
            plan.serving
        );
    }

    #[test]
    fn windows_as_long_as_the_validity_are_refused() {
        let mut l = lifetimes();
        l.check().unwrap();
        l.renew_before = l.validity;
        assert!(l.check().unwrap_err().contains("--renew-before"));
        let mut l = lifetimes();
        l.ca_renew_before = l.ca_validity * 2;
        assert!(l.check().unwrap_err().contains("--ca-renew-before"));
    }
}
