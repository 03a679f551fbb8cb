//! Publish a component: blobs, manifest, the signature referrer (and the referrers tag
//! fallback), the tag last.

use super::client::oci_error;
use super::manifest::descriptor;
use super::*;
use std::collections::BTreeMap;

impl Registry {
    /// Push `component` to `target` (a tag) in the Wasm OCI artifact layout: the blobs, the
    /// manifest by digest, then, with `signature` (a `.sig` text for these bytes), its signature
    /// referrer and the referrers tag when the registry has no referrers API, and last the tag. `version` goes into the manifest's
    /// `org.opencontainers.image.version` annotation.
    /// Errors: the registry is unreachable or refuses a push (401/403: credentials), `target`
    /// has no tag.
    pub async fn publish(
        &self,
        target: &Source,
        component: &[u8],
        version: Option<&str>,
        signature: Option<&[u8]>,
    ) -> Result<Published> {
        if target.tag().is_none() || target.digest().is_some() {
            return Err(RegistryError::Config(
                "publish needs a tag: REGISTRY/REPO:TAG".into(),
            ));
        }
        let auth = self.auth.to_oci();
        self.oci
            .auth(
                &target.reference,
                &auth,
                oci_client::RegistryOperation::Push,
            )
            .await
            .map_err(oci_error)?;
        let layer_digest = sha256_digest(component);
        let created = crate::output::rfc3339(now_secs());
        let config = serde_json::to_vec(&serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer_digest],
        }))
        .map_err(|e| invalid(e.to_string()))?;
        let config_digest = sha256_digest(&config);
        self.push_blob(target, component, &layer_digest).await?;
        self.push_blob(target, &config, &config_digest).await?;
        let mut annotations = BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            created.clone(),
        )]);
        if let Some(v) = version {
            annotations.insert("org.opencontainers.image.version".into(), v.to_string());
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            artifact_type: None,
            config: descriptor(WASM_CONFIG_MEDIA_TYPE, &config),
            layers: vec![descriptor(WASM_LAYER_MEDIA_TYPE, component)],
            subject: None,
            annotations: Some(annotations),
        };
        let body = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
        let digest = sha256_digest(&body);
        let size = body.len() as u64;
        // By digest first; the tag moves last, once the signature can be found: a daemon that
        // polls in between must never see the new digest without its signature.
        self.push_manifest(
            &target.at_digest(&digest),
            body.clone(),
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await?;
        let mut published = Published {
            digest: digest.clone(),
            layer_digest,
            signature_digest: None,
            referrers: None,
        };
        let Some(sig) = signature else {
            self.push_manifest(target, body, OCI_MANIFEST_MEDIA_TYPE)
                .await?;
            return Ok(published);
        };
        let body_for_tag = body;
        self.push_blob(target, EMPTY_JSON, &sha256_digest(EMPTY_JSON))
            .await?;
        self.push_blob(target, sig, &sha256_digest(sig)).await?;
        let referrer = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
            config: descriptor(OCI_EMPTY_MEDIA_TYPE, EMPTY_JSON),
            layers: vec![descriptor(SIGNATURE_ARTIFACT_TYPE, sig)],
            subject: Some(Descriptor {
                media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
                digest: digest.clone(),
                size,
                artifact_type: None,
                annotations: None,
            }),
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                created,
            )])),
        };
        let body = serde_json::to_vec(&referrer).map_err(|e| invalid(e.to_string()))?;
        let referrer_digest = sha256_digest(&body);
        let entry = Descriptor {
            media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
            digest: referrer_digest.clone(),
            size: body.len() as u64,
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.into()),
            annotations: None,
        };
        self.push_manifest(
            &target.at_digest(&referrer_digest),
            body,
            OCI_MANIFEST_MEDIA_TYPE,
        )
        .await?;
        published.signature_digest = Some(referrer_digest);
        if self.has_referrers_api(target, &digest).await? {
            published.referrers = Some("referrers-api");
        } else {
            self.add_to_referrers_tag(target, &digest, entry).await?;
            published.referrers = Some("referrers-tag");
        }
        self.push_manifest(target, body_for_tag, OCI_MANIFEST_MEDIA_TYPE)
            .await?;
        Ok(published)
    }

    /// Add `entry` to the referrers tag of `subject` (pull the index or start an empty one, add
    /// the descriptor unless present, push it back). Two publishers racing on one subject can
    /// lose an entry: the distribution spec 1.1 offers no conditional push for this tag.
    async fn add_to_referrers_tag(
        &self,
        target: &Source,
        subject: &str,
        entry: Descriptor,
    ) -> Result<()> {
        let tag = referrers_tag(subject);
        let url = self.url(target, "manifests", &tag);
        let mut index = match self
            .get_bounded(target, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await?
        {
            Some((_, body)) => serde_json::from_slice::<Index>(&body)
                .map_err(|e| invalid(format!("the referrers tag {tag}: {e}")))?,
            None => Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX_MEDIA_TYPE.into()),
                manifests: Vec::new(),
            },
        };
        if index.manifests.iter().any(|d| d.digest == entry.digest) {
            return Ok(());
        }
        index.manifests.push(entry);
        let body = serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?;
        self.push_manifest(&target.at_tag(&tag), body, OCI_INDEX_MEDIA_TYPE)
            .await
    }

    async fn push_blob(&self, target: &Source, bytes: &[u8], digest: &str) -> Result<()> {
        self.oci
            .push_blob(&target.reference, bytes, digest)
            .await
            .map(|_| ())
            .map_err(oci_error)
    }

    async fn push_manifest(&self, target: &Source, body: Vec<u8>, media_type: &str) -> Result<()> {
        let content_type = http::HeaderValue::from_str(media_type)
            .map_err(|e| invalid(format!("media type: {e}")))?;
        self.oci
            .push_manifest_raw(&target.reference, body, content_type)
            .await
            .map(|_| ())
            .map_err(oci_error)
    }
}
