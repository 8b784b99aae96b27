//! Trusting a private CA for https remotes.
//!
//! gix's reqwest backend (the one this crate uses: rustls, no OpenSSL) reads `http.sslCAInfo`
//! and `GIT_SSL_CAINFO` into its transport options but never hands the file to the HTTP client,
//! so a git server with a certificate from a private CA would be refused however the agent is
//! configured. Here the CA file is read at every fetch (a rotated bundle is picked up) and
//! installed into the client, with git's meaning: its certificates are the only ones trusted.

use std::{
    any::Any,
    path::Path,
    sync::{Arc, Mutex},
};

use gix::protocol::transport::client::blocking_io::http::{Options, reqwest};

use crate::SourceError;

/// Transport options for `url` as the repository's configuration gives them, with a CA file
/// installed as the client's only trust anchors: `ca_file` (from [`crate::SourceOptions`]) if
/// set, else what `http.sslCAInfo` / `GIT_SSL_CAINFO` name. `None` when there is nothing to
/// change (no CA file, or not an http(s) remote).
pub(crate) fn transport_options(
    repo: &gix::Repository,
    url: &gix::Url,
    ca_file: Option<&Path>,
) -> Result<Option<Box<dyn Any>>, SourceError> {
    let invalid = |why: String| SourceError::InvalidSpec { why };
    let url_text = url.to_bstring();
    let Some(mut options) = repo
        .transport_options(url_text.as_slice(), None)
        .map_err(|err| invalid(format!("http configuration: {err:#}")))?
    else {
        return Ok(None);
    };
    let Some(http) = options.downcast_mut::<Options>() else {
        return Ok(None);
    };
    let Some(ca_file) = ca_file
        .map(Path::to_path_buf)
        .or_else(|| http.ssl_ca_info.clone())
    else {
        return Ok(None);
    };
    let certificates = read_ca_file(&ca_file)?;
    let backend = reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            Ok(builder.tls_certs_only(certificates.clone()))
        })),
        configure_request: None,
    };
    http.backend = Some(Arc::new(Mutex::new(backend)));
    Ok(Some(options))
}

/// Read every PEM certificate of `path`; an unreadable file or one without certificates is a
/// configuration error (trusting nothing would only fail later, less clearly).
fn read_ca_file(path: &Path) -> Result<Vec<::reqwest::Certificate>, SourceError> {
    let invalid = |why: String| SourceError::InvalidSpec {
        why: format!("CA file {}: {why}", path.display()),
    };
    let pem = std::fs::read(path).map_err(|err| invalid(err.to_string()))?;
    let certificates =
        ::reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| invalid(err.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_ca_file_is_a_configuration_error_naming_the_file() {
        let err = read_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(matches!(err, SourceError::InvalidSpec { .. }));
        assert!(err.to_string().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let err = read_ca_file(&file).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
