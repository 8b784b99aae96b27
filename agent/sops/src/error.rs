//! Why a SOPS file could not be decrypted.

/// A SOPS file that could not be decrypted or verified. Messages name the
/// path of the value (`stringData:password`), never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    /// The file is not valid YAML or JSON.
    #[error("not valid {format}: {message}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The file has no `sops` metadata (or it is not a mapping).
    #[error("no SOPS metadata (a top-level `sops` mapping)")]
    NoMetadata,
    /// The metadata asks for something gitwarden does not do.
    #[error("unsupported SOPS file: {0}")]
    Unsupported(String),
    /// The metadata is malformed.
    #[error("malformed SOPS metadata: {0}")]
    Metadata(String),
    /// No age key configured, or none of them is a recipient of the file.
    #[error("none of the agent's age keys can decrypt it (recipients: {recipients})")]
    NoMatchingKey {
        /// The file's age recipients.
        recipients: String,
    },
    /// A value at an encrypted path is not a SOPS ciphertext or does not decrypt.
    #[error("value at {path} {problem}")]
    Value {
        /// `stringData:password`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The MAC does not match the values: the file was changed after it was encrypted.
    #[error(
        "MAC mismatch: the file was changed after it was encrypted (or encrypted by a broken tool)"
    )]
    MacMismatch,
    /// A document is not a mapping.
    #[error("document {0} is not a mapping")]
    NotAMapping(usize),
}
