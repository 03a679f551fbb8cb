//! Publish a component: blobs, manifest, the signature referrer (and the referrers tag
//! fallback), the tag last.

use super::manifest::descriptor;
use super::*;
use std::collections::BTreeMap;

impl Registry {
    /// Push `component` to `target` (a tag) in the Wasm OCI artifact layout: the blobs, the
    /// manifest by digest, then, with `signature` (a `.sig` text for these bytes), its signature
    /// referrer and the referrers tag when the registry has no referrers API, and last the tag. `version` goes into the manifest's
    /// `org.opencontainers.image.version` annotation.
    /// Errors: the registry is unreachable or refuses a push (401/403: credentials), `target`
    /// has no tag, the signature is still not listed in the referrers tag after
    /// [`REFERRERS_TAG_ATTEMPTS`] writes (a status error saying so).
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

    /// Add `entry` to the referrers tag of `subject` and make sure it stays listed: pull the
    /// index (or start an empty one), add the descriptor unless present, push it back, wait a
    /// moment (jittered, so that a racing writer's push lands first), read it back; repeat
    /// until the entry is listed, at most [`REFERRERS_TAG_ATTEMPTS`] times. The distribution spec
    /// 1.1 offers no conditional push for this tag, so two publishers of one digest overwrite
    /// each other's entries; the read-back finds that and writes again.
    /// Errors: those of the requests; the entry still missing after the last attempt
    /// ([`RegistryError::Status`] with status 409, saying so).
    async fn add_to_referrers_tag(
        &self,
        target: &Source,
        subject: &str,
        entry: Descriptor,
    ) -> Result<()> {
        let tag = referrers_tag(subject);
        let url = self.url(target, "manifests", &tag);
        for attempt in 0..REFERRERS_TAG_ATTEMPTS {
            let mut index = self.referrers_tag_index(target, &url, &tag).await?;
            if !index.manifests.iter().any(|d| d.digest == entry.digest) {
                index.manifests.push(entry.clone());
                let body = serde_json::to_vec(&index).map_err(|e| invalid(e.to_string()))?;
                self.push_manifest(&target.at_tag(&tag), body, OCI_INDEX_MEDIA_TYPE)
                    .await?;
            }
            tokio::time::sleep(settle_delay(attempt)).await;
            let listed = self.referrers_tag_index(target, &url, &tag).await?;
            if listed.manifests.iter().any(|d| d.digest == entry.digest) {
                return Ok(());
            }
            tracing::warn!(tag = %tag, attempt = attempt + 1,
                "the signature referrer is missing from the referrers tag after it was written (another publisher of this digest?); writing it again");
        }
        Err(RegistryError::Status {
            status: 409,
            what: format!("the referrers tag {tag}"),
            detail: format!(
                "the signature referrer {} is not listed after {REFERRERS_TAG_ATTEMPTS} writes: \
                 another writer keeps replacing the tag; publish again when it is done",
                entry.digest
            ),
            retry_after: None,
        })
    }

    /// The referrers tag's index, or an empty one when the tag does not exist.
    async fn referrers_tag_index(&self, target: &Source, url: &str, tag: &str) -> Result<Index> {
        Ok(
            match self
                .get_bounded(target, url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
                .await?
            {
                Some((_, body)) => serde_json::from_slice::<Index>(&body)
                    .map_err(|e| invalid(format!("the referrers tag {tag}: {e}")))?,
                None => Index {
                    schema_version: 2,
                    media_type: Some(OCI_INDEX_MEDIA_TYPE.into()),
                    manifests: Vec::new(),
                },
            },
        )
    }

    /// Push a blob unless the registry has it: `HEAD` the blob, else the distribution spec's
    /// monolithic upload, `POST /v2/<name>/blobs/uploads/` then `PUT <Location>?digest=…`.
    async fn push_blob(&self, target: &Source, bytes: &[u8], digest: &str) -> Result<()> {
        let blob_url = self.url(target, "blobs", digest);
        if self
            .send(target, reqwest::Method::HEAD, &blob_url, "*/*")
            .await?
            .is_some()
        {
            return Ok(());
        }
        let start = self.url(target, "blobs", "uploads/");
        let session = self
            .send_body(target, reqwest::Method::POST, &start, "*/*", None)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("the upload endpoint {start}")))?;
        let location = session
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid(format!("{start} answered without a Location")))?;
        let mut upload = reqwest::Url::parse(&start)
            .and_then(|base| base.join(location))
            .map_err(|e| invalid(format!("the upload Location {}: {e}", printable(location))))?;
        drop(session);
        upload.query_pairs_mut().append_pair("digest", digest);
        self.send_body(
            target,
            reqwest::Method::PUT,
            upload.as_str(),
            "*/*",
            Some(("application/octet-stream", bytes)),
        )
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("the upload of {digest}")))?;
        Ok(())
    }

    async fn push_manifest(&self, target: &Source, body: Vec<u8>, media_type: &str) -> Result<()> {
        let reference = target.digest().or(target.tag()).ok_or_else(|| {
            RegistryError::Config("a manifest push needs a tag or a digest".into())
        })?;
        let url = self.url(target, "manifests", reference);
        self.send_body(
            target,
            reqwest::Method::PUT,
            &url,
            "*/*",
            Some((media_type, &body)),
        )
        .await?
        .ok_or_else(|| RegistryError::NotFound(format!("the repository of {url}")))?;
        Ok(())
    }
}

/// How long to wait before reading the referrers tag back after attempt `attempt` (0-based):
/// 0.5 s doubled at each attempt, plus up to as much again of jitter, so that two publishers
/// do not keep writing in step.
fn settle_delay(attempt: u32) -> Duration {
    let base = 500u64 << attempt.min(4);
    let jitter = u64::from(std::process::id()).wrapping_mul(2_654_435_761)
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
        );
    Duration::from_millis(base + jitter % base)
}
