//! The one wildcard gitwarden's configuration understands: `*`.
//!
//! Names in Kubernetes are structured with `:` (usernames such as
//! `system:serviceaccount:<namespace>:<name>`), so a `*` matches any run of
//! characters *within one `:`-separated segment* and never crosses a `:`.
//! `system:serviceaccount:cert-manager:*` therefore names every service
//! account of `cert-manager` and nothing else, whatever the rest of a crafted
//! username looks like. Every other character is literal: no `?`, no classes,
//! no escapes, so a pattern reads exactly as it matches.

/// Whether `text` matches `pattern` segment by segment (see the module docs).
///
/// Both must have the same number of `:`-separated segments.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    if !is_glob(pattern) {
        return pattern == text;
    }
    let mut patterns = pattern.split(':');
    let mut texts = text.split(':');
    loop {
        match (patterns.next(), texts.next()) {
            (None, None) => return true,
            (Some(p), Some(t)) if segment_matches(p, t) => {}
            _ => return false,
        }
    }
}

/// Whether a pattern contains a wildcard at all.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains('*')
}

/// Whether every segment of a pattern is made only of `*`, so that it matches
/// (nearly) any name of its shape without naming anything.
pub(crate) fn is_only_wildcards(pattern: &str) -> bool {
    pattern
        .split(':')
        .all(|segment| !segment.is_empty() && segment.chars().all(|c| c == '*'))
}

/// Classic wildcard matching of one segment, linear in practice: on a mismatch
/// only the most recent `*` is widened, which is enough because an earlier `*`
/// can never help a later literal match.
///
/// Works on bytes, without allocating (it runs for every admission request):
/// `*` is ASCII, and in UTF-8 a literal character can only match where a
/// character starts in the text, so byte-wise and character-wise matching
/// agree.
fn segment_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and of the text it currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_characters_outside_ascii_as_one_run() {
        assert!(matches("user:é*ü", "user:éaßü"));
        assert!(matches("user:*ß", "user:ßß"));
        assert!(!matches("user:é*ü", "user:eaü"));
        assert!(!matches("user:*ü", "user:üx"));
    }

    #[test]
    fn a_literal_pattern_matches_only_itself() {
        assert!(matches("system:kube-scheduler", "system:kube-scheduler"));
        assert!(!matches("system:kube-scheduler", "system:kube-scheduler2"));
        assert!(!matches("system:kube-scheduler", "system:kube-schedule"));
    }

    #[test]
    fn a_star_matches_a_whole_segment() {
        let p = "system:serviceaccount:cert-manager:*";
        assert!(matches(
            p,
            "system:serviceaccount:cert-manager:cert-manager"
        ));
        assert!(matches(p, "system:serviceaccount:cert-manager:"));
    }

    #[test]
    fn a_star_never_crosses_a_colon() {
        let p = "system:serviceaccount:cert-manager:*";
        assert!(!matches(p, "system:serviceaccount:cert-manager:a:b"));
        assert!(!matches("system:*", "system:serviceaccount:kube-system:x"));
    }

    #[test]
    fn a_star_inside_a_segment_matches_prefixes_and_suffixes() {
        assert!(matches("team-*-admins", "team-payments-admins"));
        assert!(matches("team-*-admins", "team--admins"));
        assert!(!matches("team-*-admins", "team-payments-users"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b*", "xxbxxaxx"));
    }

    #[test]
    fn other_glob_characters_are_literal() {
        assert!(matches("a?c", "a?c"));
        assert!(!matches("a?c", "abc"));
        assert!(!matches("[ab]", "a"));
    }

    #[test]
    fn only_wildcard_patterns_are_recognised() {
        assert!(is_only_wildcards("*"));
        assert!(is_only_wildcards("*:**"));
        assert!(!is_only_wildcards("system:*"));
        assert!(!is_only_wildcards("*:"));
    }
}
