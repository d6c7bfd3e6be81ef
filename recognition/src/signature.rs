//! Ed25519 signatures of classifier files, so the lock only accepts people enrolled by the
//! holder of the signing key.
//!
//! # Format
//!
//! A signed classifier is the unsigned classifier file followed by one more ONNX metadata
//! entry, `facelock.signature` = base64 of the 64-byte signature. Protobuf lets a message be
//! extended by appending fields (repeated fields concatenate), so the signed file is still a
//! valid ONNX model that every ONNX tool reads, and the signature is visible as ordinary
//! metadata. The appended entry has a fixed length ([`TRAILER_LEN`] bytes), so verifying needs
//! no protobuf parser: check the trailer, verify the signature over everything before it.
//!
//! The signed message is [`CONTEXT`] followed by the unsigned bytes (domain separation: a
//! signature made with the same key for some other purpose never verifies as a classifier).
//! Any change to the file — including re-saving it with an ONNX tool, which reorders the
//! entries — makes verification fail; re-signing replaces an existing trailer.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The ONNX metadata key that holds the signature.
pub const METADATA_KEY: &str = "facelock.signature";

/// Prepended to the file bytes before signing (domain separation).
pub const CONTEXT: &[u8] = b"facelock classifier signature v1\n";

/// Length of the base64 text of a 64-byte signature.
const SIG_B64_LEN: usize = 88;
/// Protobuf: field 14 of ModelProto (`metadata_props`), wire type 2 (length-delimited).
const TAG_METADATA_PROPS: u8 = (14 << 3) | 2;
/// Protobuf: fields 1 (`key`) and 2 (`value`) of StringStringEntryProto, wire type 2.
const TAG_KEY: u8 = (1 << 3) | 2;
const TAG_VALUE: u8 = (2 << 3) | 2;
/// Length of the encoded StringStringEntryProto (key and value fields).
const ENTRY_LEN: usize = 2 + METADATA_KEY.len() + 2 + SIG_B64_LEN;
/// Length of the appended metadata entry, tag and length byte included.
pub const TRAILER_LEN: usize = 2 + ENTRY_LEN;

// Every length above must fit a one-byte protobuf varint for the fixed layout to hold.
const _: () = assert!(ENTRY_LEN < 128 && METADATA_KEY.len() < 128 && SIG_B64_LEN < 128);

/// Why a classifier file or a key was refused. Each message says what the operator can do.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The file carries no signature while a trusted key is set.
    #[error(
        "unsigned: the classifier carries no signature, but a trusted key is set; \
         train it with `trainer train --sign <private key>` or sign it with `trainer sign`"
    )]
    Unsigned,
    /// The signature does not verify with the trusted key: the file was changed after
    /// signing, or signed with a different key.
    #[error(
        "signature does not match (file modified or signed by another key); \
         re-sign it with `trainer sign` and the private key that belongs to the trusted key"
    )]
    Mismatch,
    /// A key file could not be read.
    #[error("cannot read key file {path}: {reason}")]
    KeyUnreadable { path: PathBuf, reason: String },
    /// A key file is not a PEM-encoded Ed25519 key of the expected kind.
    #[error(
        "key file {path} is not a PEM {expected} Ed25519 key ({reason}); \
         generate a key pair with `trainer keygen`"
    )]
    KeyInvalid {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
}

/// A freshly generated key pair, PEM-encoded (PKCS#8 private key, SPKI public key).
#[derive(Clone)]
pub struct GeneratedKeys {
    /// Keep secret: whoever holds it can enrol people.
    pub private_pem: String,
    /// Install on the lock as `security.trusted_key`.
    pub public_pem: String,
}

impl std::fmt::Debug for GeneratedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKeys")
            .field("private_pem", &"<redacted>")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates a new Ed25519 key pair from the operating system's random source.
pub fn keygen() -> GeneratedKeys {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    GeneratedKeys {
        private_pem: key
            .to_pkcs8_pem(Default::default())
            .expect("an Ed25519 key encodes as PKCS#8")
            .to_string(),
        public_pem: key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key encodes as SPKI"),
    }
}

/// Parses a PEM private key; `path` names the file in errors.
pub fn signing_key_from_pem(pem: &str, path: &Path) -> Result<SigningKey, SignatureError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| SignatureError::KeyInvalid {
        path: path.to_owned(),
        expected: "private",
        reason: e.to_string(),
    })
}

/// Parses a PEM public key; `path` names the file in errors.
pub fn verifying_key_from_pem(pem: &str, path: &Path) -> Result<VerifyingKey, SignatureError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|e| SignatureError::KeyInvalid {
        path: path.to_owned(),
        expected: "public",
        reason: e.to_string(),
    })
}

/// Reads a PEM private key file (as written from [`GeneratedKeys::private_pem`]).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SignatureError> {
    signing_key_from_pem(&read_key_file(path)?, path)
}

/// Reads a PEM public key file (the lock's `security.trusted_key`).
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, SignatureError> {
    verifying_key_from_pem(&read_key_file(path)?, path)
}

fn read_key_file(path: &Path) -> Result<String, SignatureError> {
    std::fs::read_to_string(path).map_err(|e| SignatureError::KeyUnreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A short, stable identifier of a public key for logs (first 16 hex digits of the sha256
/// of the raw key).
pub fn key_id(key: &VerifyingKey) -> String {
    crate::models::sha256_hex(key.as_bytes())[..16].to_owned()
}

/// Signs classifier bytes: returns the file with the signature entry appended. An existing
/// signature is replaced, so re-signing with another key works.
pub fn sign(bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    let unsigned = unsigned_part(bytes);
    let signature = key.sign(&message(unsigned));
    let b64 = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
    debug_assert_eq!(b64.len(), SIG_B64_LEN);
    let mut out = Vec::with_capacity(unsigned.len() + TRAILER_LEN);
    out.extend_from_slice(unsigned);
    out.extend_from_slice(&trailer_header());
    out.extend_from_slice(b64.as_bytes());
    out
}

/// Verifies that classifier bytes were signed by `trusted` and not changed since.
pub fn verify(bytes: &[u8], trusted: &VerifyingKey) -> Result<(), SignatureError> {
    let Some((unsigned, signature)) = split(bytes) else {
        // A signature entry anywhere else means the file was edited after signing.
        return if contains(bytes, METADATA_KEY.as_bytes()) {
            Err(SignatureError::Mismatch)
        } else {
            Err(SignatureError::Unsigned)
        };
    };
    trusted
        .verify_strict(&message(unsigned), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Whether the bytes end with a well-formed signature entry (says nothing about validity).
pub fn is_signed(bytes: &[u8]) -> bool {
    split(bytes).is_some()
}

/// The bytes without a trailing signature entry (the bytes themselves when unsigned).
pub fn unsigned_part(bytes: &[u8]) -> &[u8] {
    split(bytes).map_or(bytes, |(unsigned, _)| unsigned)
}

/// Splits a signed file into the signed bytes and the signature.
fn split(bytes: &[u8]) -> Option<(&[u8], Signature)> {
    let start = bytes.len().checked_sub(TRAILER_LEN)?;
    let (unsigned, trailer) = bytes.split_at(start);
    let header = trailer_header();
    let b64 = trailer.strip_prefix(header.as_slice())?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let raw: [u8; 64] = raw.try_into().ok()?;
    Some((unsigned, Signature::from_bytes(&raw)))
}

/// The trailer up to the base64 text: entry tag and length, key field, value tag and length.
fn trailer_header() -> Vec<u8> {
    let mut h = vec![TAG_METADATA_PROPS, ENTRY_LEN as u8, TAG_KEY];
    h.push(METADATA_KEY.len() as u8);
    h.extend_from_slice(METADATA_KEY.as_bytes());
    h.extend_from_slice(&[TAG_VALUE, SIG_B64_LEN as u8]);
    h
}

fn message(unsigned: &[u8]) -> Vec<u8> {
    [CONTEXT, unsigned].concat()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{self, ClassifierMeta, HeadParams, Thresholds};
    use crate::engine::OnnxFile;

    fn classifier_bytes(extra: &[(String, String)]) -> Vec<u8> {
        let meta = ClassifierMeta {
            labels: vec!["ada".into(), "grace".into()],
            thresholds: Thresholds {
                min_probability: 0.5,
                min_similarity: 0.5,
            },
            embedder_sha256: "00".into(),
            embedding_size: 4,
            created: "2024-01-01T00:00:00Z".into(),
            photos_per_person: Default::default(),
            notes: Default::default(),
            crop_margin: 0.0,
            detector_min_face_px: 20.0,
            pipeline_version: artifact::PIPELINE_VERSION,
        };
        let head = HeadParams {
            weights: vec![0.1; 8],
            bias: vec![0.0; 2],
            centroids: vec![0.5; 8],
        };
        artifact::encode(&meta, &head, extra)
    }

    fn keys() -> (SigningKey, VerifyingKey) {
        let generated = keygen();
        let path = Path::new("test.pem");
        let signing = signing_key_from_pem(&generated.private_pem, path).unwrap();
        let verifying = verifying_key_from_pem(&generated.public_pem, path).unwrap();
        assert_eq!(signing.verifying_key(), verifying);
        (signing, verifying)
    }

    #[test]
    fn signed_file_verifies_with_the_matching_key() {
        let (signing, verifying) = keys();
        let signed = sign(&classifier_bytes(&[]), &signing);
        assert!(is_signed(&signed));
        verify(&signed, &verifying).unwrap();
    }

    #[test]
    fn signed_file_is_still_onnx_with_the_signature_as_metadata() {
        let (signing, _) = keys();
        let unsigned = classifier_bytes(&[]);
        let signed = sign(&unsigned, &signing);
        let file = OnnxFile::from_bytes(Path::new("signed.onnx"), &signed).unwrap();
        let metadata = file.metadata();
        assert_eq!(metadata[METADATA_KEY].len(), SIG_B64_LEN);
        assert!(metadata.contains_key("facelock.meta"));
        // The appended entry is exactly what `artifact::encode` writes for an extra entry.
        let encoded = classifier_bytes(&[(METADATA_KEY.into(), metadata[METADATA_KEY].clone())]);
        assert_eq!(encoded, signed);
    }

    #[test]
    fn unsigned_file_is_refused_as_unsigned() {
        let (_, verifying) = keys();
        let err = verify(&classifier_bytes(&[]), &verifying).unwrap_err();
        assert!(matches!(err, SignatureError::Unsigned), "{err}");
        assert!(err.to_string().starts_with("unsigned"), "{err}");
    }

    #[test]
    fn modified_file_is_refused() {
        let (signing, verifying) = keys();
        let signed = sign(&classifier_bytes(&[]), &signing);
        // Flip one bit in the signed part (e.g. a weight) and in the signature itself.
        for position in [signed.len() / 2, signed.len() - 5] {
            let mut tampered = signed.clone();
            tampered[position] ^= 0x01;
            let err = verify(&tampered, &verifying).unwrap_err();
            assert!(
                matches!(err, SignatureError::Mismatch),
                "byte {position}: {err}"
            );
        }
    }

    #[test]
    fn file_extended_after_signing_is_refused_as_modified() {
        let (signing, verifying) = keys();
        let mut signed = sign(&classifier_bytes(&[]), &signing);
        // Another metadata entry appended after the signature (a valid ONNX edit).
        signed.extend_from_slice(&[TAG_METADATA_PROPS, 4, TAG_KEY, 0, TAG_VALUE, 0]);
        let err = verify(&signed, &verifying).unwrap_err();
        assert!(matches!(err, SignatureError::Mismatch), "{err}");
    }

    #[test]
    fn file_signed_by_another_key_is_refused() {
        let (signing, _) = keys();
        let (_, other) = keys();
        let signed = sign(&classifier_bytes(&[]), &signing);
        let err = verify(&signed, &other).unwrap_err();
        assert!(err.to_string().contains("signed by another key"), "{err}");
    }

    #[test]
    fn re_signing_replaces_the_signature() {
        let (first, _) = keys();
        let (second, second_public) = keys();
        let unsigned = classifier_bytes(&[]);
        let resigned = sign(&sign(&unsigned, &first), &second);
        assert_eq!(resigned.len(), unsigned.len() + TRAILER_LEN);
        assert_eq!(unsigned_part(&resigned), unsigned.as_slice());
        verify(&resigned, &second_public).unwrap();
    }

    #[test]
    fn key_files_of_the_wrong_kind_are_refused_with_a_hint() {
        let generated = keygen();
        let path = Path::new("trusted.pem");
        let err = verifying_key_from_pem(&generated.private_pem, path).unwrap_err();
        assert!(err.to_string().contains("trainer keygen"), "{err}");
        let err = read_verifying_key(Path::new("/nonexistent/trusted.pem")).unwrap_err();
        assert!(matches!(err, SignatureError::KeyUnreadable { .. }), "{err}");
        assert_eq!(key_id(&keys().1).len(), 16);
    }
}
