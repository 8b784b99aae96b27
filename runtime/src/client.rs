//! A Kubernetes client the way every gitwarden command finds one.

use std::path::{Path, PathBuf};

/// Why no client could be built; each names its cause once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig named on the command line could not be read.
    #[error("reading the kubeconfig {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig was read but does not describe a usable cluster.
    #[error("loading the kubeconfig {}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig was named and none could be inferred.
    #[error("finding a Kubernetes configuration (in-cluster, $KUBECONFIG or ~/.kube/config)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration is there but the client could not be built.
    #[error("building the Kubernetes client")]
    Build(#[source] kube::Error),
}

/// The configuration from `kubeconfig` when given, otherwise inferred:
/// the in-cluster service account, then `$KUBECONFIG`, then
/// `~/.kube/config` (kube's order).
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClientError> {
    match kubeconfig {
        Some(path) => {
            let file =
                kube::config::Kubeconfig::read_from(path).map_err(|source| ClientError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|source| ClientError::Load {
                    path: path.to_owned(),
                    source,
                })
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer),
    }
}

/// A client for [`config`].
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    kube::Client::try_from(config(kubeconfig).await?).map_err(ClientError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named_in_the_error() {
        let err = client(Some(Path::new("/nonexistent/kubeconfig")))
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("reading the kubeconfig /nonexistent/kubeconfig")
        );
    }
}
