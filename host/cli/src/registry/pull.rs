//! Pull a component by digest, trust first: the manifest, then the signature referrers, and
//! only then the layer (streamed to a file, hashed on the way).
//!
//! Every error names the lookup that failed ([`Lookup`]) and how, so that a log line sends the
//! operator the right way: a missing referrers tag is not an unsigned component.

use super::*;
use krypton_host::signing;
use sha2::Digest as _;
use std::io::Write as _;
use std::path::Path;

/// The lookups of a pull, named in every error and log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// `GET /v2/<name>/manifests/<digest>`: the component manifest.
    Manifest,
    /// `GET /v2/<name>/referrers/<digest>` (OCI distribution spec 1.1, "Listing Referrers").
    ReferrersApi,
    /// The referrers tag `sha256-<hex>` ("Referrers Tag Schema"), asked when the API is missing.
    ReferrersTag,
    /// A signature referrer's manifest and its `.sig` blob.
    SignatureBlob,
    /// `GET /v2/<name>/blobs/<layer digest>`: the component bytes.
    Layer,
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookup::Manifest => "manifest",
            Lookup::ReferrersApi => "referrers API",
            Lookup::ReferrersTag => "referrers tag",
            Lookup::SignatureBlob => "signature blob",
            Lookup::Layer => "layer",
        })
    }
}

/// A failed lookup: which one, and the registry error (its text says how it failed).
#[derive(Debug)]
pub struct LookupError {
    /// The lookup that failed.
    pub lookup: Lookup,
    /// How.
    pub error: RegistryError,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} lookup failed: {}", self.lookup, self.error)
    }
}

fn at(lookup: Lookup) -> impl Fn(RegistryError) -> LookupError + Copy {
    move |error| LookupError { lookup, error }
}

/// A component manifest read and checked against the Wasm layout; no layer byte fetched yet.
#[derive(Debug, Clone)]
pub struct Announced {
    /// The manifest digest.
    pub digest: String,
    /// The layer descriptor (its digest is `sha256:` and the component's SHA-256).
    pub layer: Descriptor,
    /// The manifest's `org.opencontainers.image.version` annotation, if any (informative).
    pub version_annotation: Option<String>,
}

impl Announced {
    /// The component's SHA-256 as 64 hex digits (the layer digest without `sha256:`).
    pub fn sha256(&self) -> &str {
        self.layer
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&self.layer.digest)
    }
}

/// The signature referrers of a component, as one complete listing.
#[derive(Debug)]
pub struct Referrers {
    /// Signature referrers: those whose `artifactType` is [`SIGNATURE_ARTIFACT_TYPE`] first,
    /// the newest (listed last) first, then those listed without an `artifactType` (their
    /// manifest's `artifactType`, or else its config media type, decides); at most
    /// [`MAX_REFERRERS`].
    pub candidates: Vec<Descriptor>,
    /// Whether more possible signature referrers were listed than considered (then none
    /// verifying proves nothing).
    pub cut: bool,
    /// Where the listing came from: `referrers API` or `referrers tag`.
    pub from: Lookup,
}

impl Registry {
    /// Pull the component at `digest`, trust material first: its manifest (checked against the
    /// Wasm layout), the `.sig` of each signature referrer, then its layer (checked against the
    /// layer digest, capped at [`krypton_host::component::MAX_COMPONENT_BYTES`]). A referrer
    /// whose `.sig` cannot be fetched is skipped when another one can; no readable referrers
    /// listing gives no signatures.
    /// Errors: see the fail-closed table in the module docs.
    pub async fn pull(&self, source: &Source, digest: &str) -> Result<Pulled> {
        let mut bytes = 0;
        let announced = self
            .announced(source, digest, &mut bytes)
            .await
            .map_err(|e| e.error)?;
        // No readable listing (no referrers tag, another document at it): no signatures, as
        // the caller sees them; the follower tells those cases apart ([`Self::signature_referrers`]).
        let candidates = match self.signature_referrers(source, digest, &mut bytes).await {
            Ok(referrers) => referrers.candidates,
            Err(LookupError {
                error: RegistryError::NotFound(_) | RegistryError::Invalid(_),
                ..
            }) => Vec::new(),
            Err(e) => return Err(e.error),
        };
        let mut signatures = Vec::new();
        let mut first_error = None;
        for entry in &candidates {
            match self
                .signature(source, digest, entry, false, &mut bytes)
                .await
            {
                Ok(Some(sig)) => signatures.push(sig),
                Ok(None) => {}
                Err(e) => first_error = first_error.or(Some(e.error)),
            }
        }
        if let (true, Some(e)) = (signatures.is_empty(), first_error) {
            return Err(e);
        }
        let component = self
            .blob(
                source,
                &announced.layer,
                krypton_host::component::MAX_COMPONENT_BYTES,
            )
            .await?;
        Ok(Pulled {
            digest: digest.to_string(),
            component,
            signatures,
            version_annotation: announced.version_annotation,
        })
    }

    /// The component manifest at `digest`, checked against the Wasm layout. Adds the bytes read
    /// to `bytes`. Errors: [`Lookup::Manifest`] with the registry error.
    pub async fn announced(
        &self,
        source: &Source,
        digest: &str,
        bytes: &mut u64,
    ) -> std::result::Result<Announced, LookupError> {
        let (content_type, body) = self
            .manifest_bytes(source, digest, OCI_MANIFEST_MEDIA_TYPE)
            .await
            .map_err(at(Lookup::Manifest))?
            .ok_or_else(|| RegistryError::NotFound(format!("the manifest {digest}")))
            .map_err(at(Lookup::Manifest))?;
        *bytes += body.len() as u64;
        let manifest = check_component_manifest(content_type.as_deref(), &body)
            .map_err(at(Lookup::Manifest))?;
        Ok(Announced {
            digest: digest.to_string(),
            layer: manifest.layers[0].clone(),
            version_annotation: manifest
                .annotations
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.version"))
                .map(|v| printable(v)),
        })
    }

    /// The complete listing of `digest`'s signature referrers: the referrers API, or, when it
    /// answers 404, the referrers tag. Entries are filtered by type before the
    /// [`MAX_REFERRERS`] cut, so that other referrers listed first cannot hide the signature.
    /// Errors (never "unsigned": a listing that cannot be read proves nothing): the API
    /// failed; the API is missing and so is the tag (it may not be pushed yet); the tag holds
    /// something other than an image index.
    pub async fn signature_referrers(
        &self,
        source: &Source,
        digest: &str,
        bytes: &mut u64,
    ) -> std::result::Result<Referrers, LookupError> {
        let api = self.url(source, "referrers", digest);
        let (from, content_type, body) = match self
            .get_bounded(source, &api, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
            .await
            .map_err(at(Lookup::ReferrersApi))?
        {
            Some((content_type, body)) => (Lookup::ReferrersApi, content_type, body),
            None => {
                let tag = referrers_tag(digest);
                let url = self.url(source, "manifests", &tag);
                let (content_type, body) = self
                    .get_bounded(source, &url, OCI_INDEX_MEDIA_TYPE, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(at(Lookup::ReferrersTag))?
                    .ok_or_else(|| LookupError {
                        lookup: Lookup::ReferrersTag,
                        error: RegistryError::NotFound(format!(
                            "the referrers tag {tag} (the registry answered 404 to the referrers \
                             API and has no such tag: a signature may not be pushed yet; asked \
                             again later)"
                        )),
                    })?;
                (Lookup::ReferrersTag, content_type, body)
            }
        };
        *bytes += body.len() as u64;
        let index = parse_index(content_type.as_deref(), &body).map_err(|e| LookupError {
            lookup: from,
            error: invalid(format!("the {from} of {digest}: {e}")),
        })?;
        let typed: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| d.artifact_type.as_deref() == Some(SIGNATURE_ARTIFACT_TYPE))
            .collect();
        let untyped: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| d.artifact_type.is_none() && d.media_type == OCI_MANIFEST_MEDIA_TYPE)
            .collect();
        // The newest signatures are listed last (a pushing client appends to the referrers
        // tag): other signature referrers listed before them cannot push them past the cut.
        let newest = &typed[typed.len().saturating_sub(MAX_REFERRERS)..];
        let candidates: Vec<Descriptor> = newest
            .iter()
            .rev()
            .chain(untyped.iter())
            .take(MAX_REFERRERS)
            .map(|d| (*d).clone())
            .collect();
        Ok(Referrers {
            cut: typed.len() + untyped.len() > candidates.len(),
            candidates,
            from,
        })
    }

    /// The `.sig` bytes of one signature referrer of `subject`; `None` when the referrer turns
    /// out to be another kind of artifact (an entry listed without `artifactType` whose
    /// manifest's `artifactType`, or else config media type, is not a signature). With
    /// `typed_only`, an untyped entry is not fetched. Adds the bytes read to `bytes`.
    /// Errors: [`Lookup::SignatureBlob`] with the registry error (a referrer naming another
    /// subject, a wrong layer, a transfer error).
    pub async fn signature(
        &self,
        source: &Source,
        subject: &str,
        entry: &Descriptor,
        typed_only: bool,
        bytes: &mut u64,
    ) -> std::result::Result<Option<Vec<u8>>, LookupError> {
        let fail = at(Lookup::SignatureBlob);
        if typed_only && entry.artifact_type.is_none() {
            return Ok(None);
        }
        if !is_sha256_digest(&entry.digest) {
            return Err(fail(invalid("a referrer with a digest that is not sha256")));
        }
        if entry.size > MAX_REFERRER_MANIFEST_BYTES {
            return Err(fail(invalid(format!(
                "the referrer {} declares {} bytes, more than the {MAX_REFERRER_MANIFEST_BYTES} a signature referrer may have",
                entry.digest, entry.size
            ))));
        }
        let (_, body) = match self
            .manifest_bytes_capped(
                source,
                &entry.digest,
                OCI_MANIFEST_MEDIA_TYPE,
                entry.size.max(1),
            )
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(fail(RegistryError::NotFound(format!(
                    "the referrer {}",
                    entry.digest
                ))));
            }
            Err(e) => return Err(fail(e)),
        };
        *bytes += body.len() as u64;
        let manifest: Manifest = serde_json::from_slice(&body)
            .map_err(|e| fail(invalid(format!("the referrer {}: {e}", entry.digest))))?;
        let kind = manifest
            .artifact_type
            .as_deref()
            .unwrap_or(&manifest.config.media_type);
        if entry.artifact_type.is_none() && kind != SIGNATURE_ARTIFACT_TYPE {
            return Ok(None);
        }
        if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject) {
            return Err(fail(invalid(format!(
                "the referrer {} does not name {subject} as its subject",
                entry.digest
            ))));
        }
        match manifest.layers.as_slice() {
            [layer] if layer.media_type == SIGNATURE_ARTIFACT_TYPE => {
                let sig = self
                    .blob(source, layer, signing::MAX_SIGNATURE_FILE_BYTES)
                    .await
                    .map_err(at(Lookup::SignatureBlob))?;
                *bytes += sig.len() as u64;
                Ok(Some(sig))
            }
            _ => Err(fail(invalid(format!(
                "the signature referrer {} must have one layer of type {SIGNATURE_ARTIFACT_TYPE}",
                entry.digest
            )))),
        }
    }

    /// Stream the layer `layer` into `dest`: a file beside it ([`partial_path`], mode 0600)
    /// filled under the declared size (itself at most
    /// [`krypton_host::component::MAX_COMPONENT_BYTES`]), hashed on the way, synced and renamed
    /// to `dest` only when size and SHA-256 are the declared ones. The download has
    /// [`layer_deadline`] of the bytes left in all and is cut after [`READ_IDLE_TIMEOUT`]
    /// without a byte; a transfer cut short keeps what arrived, and the next call continues it
    /// with a `Range` request (RFC 9110 §14.2) instead of starting over, so that a slow
    /// cellular link completes a large layer across polls. Adds the bytes received to `bytes`
    /// (a cut-short transfer counts too).
    /// Errors: [`Lookup::Layer`] with the registry error, or a local write error as
    /// [`RegistryError::Config`].
    pub async fn layer_to_file(
        &self,
        source: &Source,
        layer: &Descriptor,
        dest: &Path,
        bytes: &mut u64,
    ) -> std::result::Result<(), LookupError> {
        let fail = at(Lookup::Layer);
        let cap = krypton_host::component::MAX_COMPONENT_BYTES;
        if !is_sha256_digest(&layer.digest) || layer.size > cap {
            return Err(fail(invalid(format!(
                "the layer {} ({} bytes declared) is not a sha256 digest within {cap} bytes",
                printable(&layer.digest),
                layer.size
            ))));
        }
        let url = self.url(source, "blobs", &layer.digest);
        let partial = partial_path(dest);
        let local = |e: std::io::Error| LookupError {
            lookup: Lookup::Layer,
            error: RegistryError::Config(format!("writing {}: {e}", partial.display())),
        };
        // What an earlier, cut-short download of this layer left: hashed again (it is a file
        // on disk, so untrusted like the rest), then continued from its end.
        let (mut file, mut hasher, mut have) =
            resume_partial(&partial, layer.size).map_err(local)?;
        let mut response = self
            .send_with(
                source,
                reqwest::Method::GET,
                &url,
                "*/*",
                None,
                &Extra {
                    range_from: (have > 0).then_some(have),
                    deadline: Some(layer_deadline(layer.size - have)),
                },
            )
            .await
            .map_err(at(Lookup::Layer))?
            .ok_or_else(|| {
                fail(RegistryError::NotFound(format!(
                    "the blob {}",
                    layer.digest
                )))
            })?;
        let fail = at(Lookup::Layer);
        if have > 0 && !resumes_at(&response, have) {
            // The registry sent the whole blob (200, or a range we did not ask for): start over.
            tracing::info!(digest = %layer.digest, kept = have, "the registry did not resume the layer download; starting it over");
            file.set_len(0).map_err(local)?;
            std::io::Seek::rewind(&mut file).map_err(local)?;
            hasher = sha2::Sha256::new();
            have = 0;
        }
        if let Some(length) = response.content_length()
            && have + length > layer.size
        {
            let _ = std::fs::remove_file(&partial);
            return Err(fail(invalid(format!(
                "{url} is {} bytes, more than the {} declared",
                have + length,
                layer.size
            ))));
        }
        let mut received = have;
        let streamed = loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len() as u64;
                    *bytes += chunk.len() as u64;
                    if received > layer.size {
                        break Err(fail(invalid(format!(
                            "{url} sent more than the {} bytes declared",
                            layer.size
                        ))));
                    }
                    hasher.update(&chunk);
                    if let Err(e) = file.write_all(&chunk) {
                        break Err(local(e));
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(fail(RegistryError::Unreachable(error_chain(&e)))),
            }
        };
        if let Err(e) = streamed {
            // A transfer cut short keeps what arrived, for the next try to continue from; a
            // registry that sent too much, or a local write error, starts over.
            if !matches!(e.error, RegistryError::Unreachable(_)) {
                let _ = std::fs::remove_file(&partial);
            } else {
                let _ = file.sync_data();
            }
            return Err(e);
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        let checked = (|| {
            if received != layer.size || actual != layer.digest {
                return Err(at(Lookup::Layer)(invalid(format!(
                    "the blob {} arrived as {received} bytes with {actual} (declared {} bytes)",
                    layer.digest, layer.size
                ))));
            }
            file.sync_all().map_err(local)?;
            std::fs::rename(&partial, dest).map_err(local)?;
            if let Some(dir) = dest.parent() {
                krypton_host::files::sync_dir(dir).map_err(local)?;
            }
            Ok(())
        })();
        if checked.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        checked
    }
}

/// Where a layer download for `dest` is kept while it is incomplete: `<dest>.partial`, beside
/// it (one per digest, so that the next try continues it).
pub fn partial_path(dest: &Path) -> std::path::PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Open (or create, 0600, never through a symlink) the partial download at `path` and hash
/// what it holds: the file positioned at its end, the hasher over its bytes, and their count.
/// A partial file that is not a regular file of fewer than `size` bytes is started over.
fn resume_partial(path: &Path, size: u64) -> std::io::Result<(std::fs::File, sha2::Sha256, u64)> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let mut hasher = sha2::Sha256::new();
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() >= size {
        file.set_len(0)?;
        return Ok((file, hasher, 0));
    }
    let mut buffer = vec![0; 64 * 1024];
    let mut have = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        have += n as u64;
    }
    Ok((file, hasher, have))
}

/// Whether `response` is the continuation asked for: `206 Partial Content` whose
/// `Content-Range` starts at `from` (RFC 9110 §14.4).
fn resumes_at(response: &reqwest::Response, from: u64) -> bool {
    response.status().as_u16() == 206
        && response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split_once('-'))
            .is_some_and(|(start, _)| start.trim().parse::<u64>().ok() == Some(from))
}

/// A referrers listing: an image index. An image manifest (what some tools leave at the tag)
/// or another document is refused with what it is.
fn parse_index(content_type: Option<&str>, body: &[u8]) -> std::result::Result<Index, String> {
    if content_type == Some(OCI_MANIFEST_MEDIA_TYPE) {
        return Err(format!(
            "it is an image manifest ({OCI_MANIFEST_MEDIA_TYPE}), not an image index \
             ({OCI_INDEX_MEDIA_TYPE}); asked again later"
        ));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        media_type: Option<String>,
        layers: Option<serde_json::Value>,
    }
    let kind: Kind =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON image index: {e}"))?;
    if kind.layers.is_some() || kind.media_type.as_deref() == Some(OCI_MANIFEST_MEDIA_TYPE) {
        return Err(format!(
            "it is an image manifest, not an image index ({OCI_INDEX_MEDIA_TYPE}); asked again \
             later"
        ));
    }
    if let Some(m) = kind.media_type.as_deref()
        && m != OCI_INDEX_MEDIA_TYPE
    {
        return Err(format!(
            "it is `{}`, not an image index ({OCI_INDEX_MEDIA_TYPE})",
            printable(m)
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("not an image index: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referrers_listing_must_be_an_index() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(parse_index(None, index).unwrap().manifests.len(), 0);
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"sha256:00","size":2},"layers":[]}"#;
        let err = parse_index(None, manifest).unwrap_err();
        assert!(err.contains("is an image manifest"), "{err}");
        let err = parse_index(Some(OCI_MANIFEST_MEDIA_TYPE), index).unwrap_err();
        assert!(err.contains("is an image manifest"), "{err}");
        assert!(parse_index(None, b"[]").is_err());
    }
}
