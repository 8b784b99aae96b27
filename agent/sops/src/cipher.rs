//! One SOPS value: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM
//! with a 32-byte nonce, authenticated with the value's path.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

type SopsGcm = AesGcm<Aes256, U32>;

/// The type SOPS recorded for a value, to give it back its YAML type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    /// A YAML timestamp, kept as its text.
    Time,
    /// Raw bytes, kept as text.
    Bytes,
}

/// The plaintext of one value and its type.
pub(crate) struct Plain {
    pub text: Zeroizing<String>,
    pub kind: ValueType,
}

/// Splits `ENC[AES256_GCM,data:D,iv:I,tag:T,type:Y]` into its fields.
fn fields(value: &str) -> Option<(&str, &str, &str, &str)> {
    let inner = value.strip_prefix("ENC[AES256_GCM,")?.strip_suffix(']')?;
    let data = inner.strip_prefix("data:")?;
    let (data, rest) = data.split_once(",iv:")?;
    let (iv, rest) = rest.split_once(",tag:")?;
    let (tag, kind) = rest.split_once(",type:")?;
    Some((data, iv, tag, kind))
}

/// Decrypts one value with `key`, its path as additional data. The error
/// says what is wrong, without the value.
pub(crate) fn decrypt(value: &str, key: &[u8], aad: &str) -> Result<Plain, String> {
    let (data, iv, tag, kind) =
        fields(value).ok_or("is not a SOPS ciphertext (ENC[AES256_GCM,…])")?;
    let kind = match kind {
        "str" => ValueType::Str,
        "int" => ValueType::Int,
        "float" => ValueType::Float,
        "bool" => ValueType::Bool,
        "time" => ValueType::Time,
        "bytes" => ValueType::Bytes,
        other => return Err(format!("has an unknown SOPS type {other:?}")),
    };
    let decode = |field: &str, what: &str| {
        STANDARD
            .decode(field)
            .map_err(|_| format!("has a {what} that is not base64"))
    };
    let (mut message, iv, tag) = (
        decode(data, "ciphertext")?,
        decode(iv, "nonce")?,
        decode(tag, "tag")?,
    );
    if iv.len() != 32 || tag.len() != 16 {
        return Err("has a nonce or tag of the wrong length".to_string());
    }
    message.extend_from_slice(&tag);
    let cipher =
        SopsGcm::new_from_slice(key).map_err(|_| "cannot be decrypted: bad data key length")?;
    let plain = cipher
        .decrypt(
            Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &message,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "does not decrypt: it was changed, moved to another key, or encrypted with another data key")?;
    let text = String::from_utf8(plain).map_err(|_| "decrypts to bytes that are not UTF-8")?;
    Ok(Plain {
        text: Zeroizing::new(text),
        kind,
    })
}
