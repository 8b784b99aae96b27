//! Why a revision could not be rendered.

/// A kustomization that was refused or failed to build. Every variant names
/// the kustomization (relative to the repository root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The kustomization asks for something that could bring in content
    /// from outside the verified commit.
    #[error("kustomization {kustomization}: {field}: {reason}")]
    Refused {
        /// The kustomization file, relative to the repository root.
        kustomization: String,
        /// Which field (`resources[2]`, `helmCharts`).
        field: String,
        /// Why, for a human.
        reason: String,
    },
    /// A kustomization file is not valid YAML or not a mapping.
    #[error("kustomization {kustomization}: {reason}")]
    Invalid {
        /// The kustomization file, relative to the repository root.
        kustomization: String,
        /// What is wrong.
        reason: String,
    },
    /// kustomize failed, timed out or produced too much.
    #[error("kustomization {kustomization}: kustomize build failed: {reason}")]
    Build {
        /// The kustomization directory, relative to the repository root.
        kustomization: String,
        /// kustomize's own message (its stderr), or the limit it hit.
        reason: String,
    },
    /// kustomize's output could not be read.
    #[error(
        "kustomization {kustomization}: kustomize printed something that is not YAML objects: {reason}"
    )]
    Output {
        /// The kustomization directory, relative to the repository root.
        kustomization: String,
        /// The parser's message.
        reason: String,
    },
}
