//! The CA bundle: which CA certificates the API server trusts for the webhook.
//!
//! During a CA rotation the bundle carries the new CA *and* the old one: the
//! webhook pods keep serving the old serving certificate until the kubelet
//! refreshes their Secret volume, and the API server must accept both until
//! then. An old CA leaves the bundle only once it has expired (nothing it
//! signed can be valid any more), so the bundle never grows without bound.

use std::time::SystemTime;

use crate::inspect::CertInfo;

/// Builds the bundle to publish: `current` first, then every certificate of
/// `previous` that is still valid at `now`, without duplicates. Certificates
/// that cannot be parsed are dropped (they cannot be trusted anyway), as are
/// expired ones.
pub fn merge(current: &CertInfo, previous: &[CertInfo], now: SystemTime) -> Vec<CertInfo> {
    let mut out = vec![current.clone()];
    for cert in previous {
        if cert.validity.not_after <= now {
            continue;
        }
        if out.iter().any(|kept| kept.der == cert.der) {
            continue;
        }
        out.push(cert.clone());
    }
    out
}

/// The bundle as PEM text: the certificates in order, one block each.
pub fn render(bundle: &[CertInfo]) -> String {
    bundle.iter().map(|c| c.pem.as_str()).collect()
}

/// Whether two PEM bundles hold the same certificates in the same order,
/// whatever their line wrapping: decides whether a `caBundle` must be
/// rewritten. Unparseable text is never the same as a parseable bundle.
pub fn same_certificates(a: &str, b: &str) -> bool {
    match (CertInfo::all_from_pem(a), CertInfo::all_from_pem(b)) {
        (Ok(a), Ok(b)) => {
            !a.is_empty() && a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.der == y.der)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::CertificateAuthority;

    fn ca(name: &str, secs: u64) -> CertInfo {
        let ca = CertificateAuthority::generate(name, Duration::from_secs(secs)).unwrap();
        CertInfo::from_pem(ca.cert_pem()).unwrap()
    }

    #[test]
    fn the_current_ca_comes_first_and_a_still_valid_old_ca_stays() {
        let old = ca("old", 3600);
        let new = ca("new", 7200);
        let bundle = merge(&new, std::slice::from_ref(&old), SystemTime::now());
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[0].der, new.der);
        assert_eq!(bundle[1].der, old.der);
    }

    #[test]
    fn an_expired_ca_is_pruned_from_the_bundle() {
        let old = ca("old", 3600);
        let new = ca("new", 7200);
        let later = SystemTime::now() + Duration::from_secs(3 * 3600 / 2);
        let bundle = merge(&new, &[old], later);
        assert_eq!(bundle.len(), 1);
        assert_eq!(bundle[0].der, new.der);
    }

    #[test]
    fn the_current_ca_is_not_repeated_when_already_in_the_bundle() {
        let current = ca("current", 3600);
        let bundle = merge(
            &current,
            &[current.clone(), current.clone()],
            SystemTime::now(),
        );
        assert_eq!(bundle.len(), 1);
    }

    #[test]
    fn bundles_compare_by_certificate_not_by_text() {
        let a = ca("a", 3600);
        let b = ca("b", 3600);
        let text = render(&[a.clone(), b.clone()]);
        let rewrapped = text.replace('\n', "\r\n");
        assert!(same_certificates(&text, &rewrapped));
        assert!(!same_certificates(&text, &render(&[b, a.clone()])));
        assert!(!same_certificates(&text, &render(&[a])));
        assert!(!same_certificates("", ""));
        assert!(!same_certificates("garbage", &text));
    }
}
