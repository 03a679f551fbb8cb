//! The OCI documents this module reads and writes (descriptor, image manifest, index) and the
//! check that a manifest is the Wasm artifact layout.

use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An OCI descriptor (OCI image spec v1.1, "Descriptors"), the fields this module reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` of the referenced content.
    pub digest: String,
    /// Its size, bytes.
    pub size: u64,
    /// In an index entry or a referrers answer: the referrer's `artifactType`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image manifest, the fields this module reads or writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Set on an artifact (the signature referrer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (the signature's component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations (`org.opencontainers.image.version`, `…created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI image index, as the referrers API and the referrers tag hold it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`OCI_INDEX_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The referring manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

pub(super) fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: None,
    }
}

/// Check a component manifest against the Wasm OCI artifact layout: an OCI image manifest
/// (Content-Type, when sent, and `mediaType`), schema 2, config [`WASM_CONFIG_MEDIA_TYPE`],
/// exactly one [`WASM_LAYER_MEDIA_TYPE`] layer with a sha256 digest and a size within
/// [`krypton_host::component::MAX_COMPONENT_BYTES`]. Errors: [`RegistryError::Invalid`] naming what
/// differs.
pub fn check_component_manifest(content_type: Option<&str>, body: &[u8]) -> Result<Manifest> {
    if let Some(ct) = content_type
        && ct != OCI_MANIFEST_MEDIA_TYPE
    {
        return Err(invalid(format!(
            "the manifest is `{}`, not an OCI image manifest ({OCI_MANIFEST_MEDIA_TYPE})",
            printable(ct)
        )));
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the manifest: {e}")))?;
    if manifest.schema_version != 2
        || manifest
            .media_type
            .as_deref()
            .is_some_and(|m| m != OCI_MANIFEST_MEDIA_TYPE)
    {
        return Err(invalid(
            "the manifest is not an OCI image manifest (schema 2)",
        ));
    }
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(invalid(format!(
            "the config is `{}`, not a Wasm component ({WASM_CONFIG_MEDIA_TYPE})",
            printable(&manifest.config.media_type)
        )));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => {
            if !is_sha256_digest(&layer.digest) {
                return Err(invalid("the layer digest is not sha256"));
            }
            if layer.size > krypton_host::component::MAX_COMPONENT_BYTES {
                return Err(invalid(format!(
                    "the layer is declared {} bytes, more than the {} accepted for a component",
                    layer.size,
                    krypton_host::component::MAX_COMPONENT_BYTES
                )));
            }
        }
        layers => {
            return Err(invalid(format!(
                "a Wasm component artifact has exactly one layer of type {WASM_LAYER_MEDIA_TYPE}; \
                 this one has {} ({})",
                layers.len(),
                layers
                    .iter()
                    .take(4)
                    .map(|l| printable(&l.media_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(manifest)
}
