//! Pull a component by digest: manifest, layer, and its signature referrers.

use super::*;
use krypton_host::signing;

impl Registry {
    /// Pull the component at `digest`: its manifest (checked against the Wasm layout), its
    /// layer (checked against the layer digest, capped at
    /// [`krypton_host::component::MAX_COMPONENT_BYTES`]) and the `.sig` of each signature referrer.
    /// Errors: see the fail-closed table in the module docs.
    pub async fn pull(&self, source: &Source, digest: &str) -> Result<Pulled> {
        let (content_type, body) = self
            .manifest_bytes(source, digest, OCI_MANIFEST_MEDIA_TYPE)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the manifest {digest}")))?;
        let manifest = check_component_manifest(content_type.as_deref(), &body)?;
        let layer = &manifest.layers[0];
        let component = self
            .blob(source, layer, krypton_host::component::MAX_COMPONENT_BYTES)
            .await?;
        let mut signatures = Vec::new();
        if let Some(index) = self.referrers(source, digest).await? {
            for entry in index
                .manifests
                .iter()
                .filter(|d| d.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPE))
                .take(MAX_REFERRERS)
            {
                signatures.push(self.signature(source, digest, entry).await?);
            }
        }
        Ok(Pulled {
            digest: digest.to_string(),
            component,
            signatures,
            version_annotation: manifest
                .annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.version"))
                .map(|v| printable(v)),
        })
    }

    /// The `.sig` bytes of one signature referrer of `subject`.
    async fn signature(
        &self,
        source: &Source,
        subject: &str,
        entry: &Descriptor,
    ) -> Result<Vec<u8>> {
        if !is_sha256_digest(&entry.digest) {
            return Err(invalid("a referrer with a digest that is not sha256"));
        }
        let (_, body) = self
            .manifest_bytes(source, &entry.digest, OCI_MANIFEST_MEDIA_TYPE)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the referrer {}", entry.digest)))?;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| invalid(format!("the referrer {}: {e}", entry.digest)))?;
        if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) {
            return Err(invalid(format!(
                "the referrer {} does not name {subject} as its subject",
                entry.digest
            )));
        }
        match manifest.layers.as_slice() {
            [layer] if layer.media_type == SIGNATURE_ARTIFACT_TYPE => {
                self.blob(source, layer, signing::MAX_SIGNATURE_FILE_BYTES)
                    .await
            }
            _ => Err(invalid(format!(
                "the signature referrer {} must have one layer of type {SIGNATURE_ARTIFACT_TYPE}",
                entry.digest
            ))),
        }
    }
}
