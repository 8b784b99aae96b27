//! SOPS-encrypted manifests, decrypted in memory.
//!
//! Flux users keep Secrets in git encrypted with SOPS and age: the values are
//! AES-256-GCM ciphertexts, the data key is wrapped for each age recipient,
//! and a MAC over every value (encrypted or not) says the file is whole. This
//! crate reads such a file (YAML, one or more documents, or JSON), unwraps the
//! data key with the agent's age identities, decrypts every value and checks
//! the MAC; a file that cannot be decrypted or fails its MAC is an error
//! naming why, never a partial result.
//!
//! Plain-text values exist only in the returned JSON values: nothing here
//! writes a file or logs, and errors name paths, never values.

mod cipher;
mod decrypt;
mod error;
mod keys;
mod metadata;
mod rules;
mod tree;

pub use decrypt::{Format, decrypt, decrypt_rendered, is_encrypted};
pub use error::SopsError;
pub use keys::AgeKeys;
