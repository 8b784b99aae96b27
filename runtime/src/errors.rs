//! Showing an error with its causes, each once.
//!
//! gitwarden's error types name their own step in the message and keep the
//! cause as `source`, never both: embedding the cause as well printed it twice
//! wherever the chain is shown (`{:#}` of anyhow). Where an error becomes text
//! without anyhow (an HTTP body, a status field, a log value), [`chain`] gives
//! the same `step: cause: cause` line.

use std::error::Error;

/// `error` and its sources, joined with `: `.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // A cause that already ends the text (a wrapper that also embeds it)
        // is not repeated.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the policy")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_once_in_order() {
        let error = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(chain(&error), "reading the policy: disk on fire");
    }
}
