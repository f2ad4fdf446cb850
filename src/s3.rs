//! The S3 bucket where backups live, through `rust-s3`'s blocking API: the few calls
//! backup and restore need, each checked for its status, each error saying what was
//! being attempted.
//!
//! Server-side encryption headers go only on the requests S3 accepts them on
//! (CreateMultipartUpload and a single PUT): real S3 rejects them on UploadPart and
//! CompleteMultipartUpload and they mean nothing on GET/HEAD. So there are two bucket
//! handles: `plain` for everything, `encrypting` (plain + SSE headers) for those two.

use crate::config::{S3Config, Sse};
use crate::{Error, Result};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::serde_types::Part;
use s3::{Bucket, Region};
use std::io::Write;
use std::time::Duration;

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// A multipart upload that was started and not yet completed or aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
}

/// What HEAD says about an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub size: u64,
    /// `x-amz-server-side-encryption`, when S3 reports one.
    pub encryption: Option<String>,
    pub kms_key_id: Option<String>,
}

pub struct ObjectStore {
    plain: Box<Bucket>,
    encrypting: Box<Bucket>,
    /// For long streamed downloads: no whole-request deadline (the read timeout of
    /// the HTTP client still catches a stalled stream).
    streaming: Box<Bucket>,
    prefix: String,
    sse: Option<Sse>,
    bucket_name: String,
}

const CONTENT_TYPE_DUMP: &str = "application/octet-stream";
/// Deadline for one request that is not a streamed download (an 8 MiB part included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl ObjectStore {
    /// Builds the handles; credentials come from the standard AWS chain (environment,
    /// profile, web identity, container, EC2 instance profile through IMDSv2).
    pub fn connect(config: &S3Config) -> Result<ObjectStore> {
        let credentials = Credentials::default().map_err(|e| {
            Error::with_source(
                "finding AWS credentials (environment, profile or EC2 instance profile)",
                e,
            )
        })?;
        Self::connect_with(config, credentials)
    }

    /// Like `connect`, with the given credentials (tests pass fakes for their local
    /// S3 server instead of touching the process environment).
    pub fn connect_with(config: &S3Config, credentials: Credentials) -> Result<ObjectStore> {
        let region = match &config.endpoint {
            Some(endpoint) => Region::Custom {
                region: config.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_owned(),
            },
            None => config
                .region
                .parse::<Region>()
                .map_err(|e| Error::config("DOB_S3_REGION", format!("{:?}: {e}", config.region)))?,
        };
        let mut plain = Bucket::new(&config.bucket, region, credentials)
            .map_err(|e| Error::storage(format!("opening bucket {}", config.bucket), e))?;
        if config.endpoint.is_some() {
            plain.set_path_style();
        }
        plain.set_request_timeout(Some(REQUEST_TIMEOUT));
        let mut encrypting = plain.clone();
        if let Some(sse) = &config.sse {
            encrypting.add_header("x-amz-server-side-encryption", sse.algorithm());
            if let Sse::Kms {
                key_id: Some(key_id),
            } = sse
            {
                encrypting.add_header("x-amz-server-side-encryption-aws-kms-key-id", key_id);
            }
        }
        let mut streaming = plain.clone();
        streaming.set_request_timeout(None);
        Ok(ObjectStore {
            plain,
            encrypting,
            streaming,
            prefix: config.prefix.clone(),
            sse: config.sse.clone(),
            bucket_name: config.bucket.clone(),
        })
    }

    /// A shorter deadline for every request that is not a streamed download (the fence
    /// reads, which run on a schedule and must not outlive it).
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.plain.set_request_timeout(Some(timeout));
        self.encrypting.set_request_timeout(Some(timeout));
    }

    pub fn bucket_name(&self) -> &str {
        &self.bucket_name
    }

    pub fn sse(&self) -> Option<&Sse> {
        self.sse.as_ref()
    }

    /// `<prefix>/<rest>`, or `<rest>` when the prefix is empty.
    pub fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// The prefix every backup key starts with (`dob/`, or empty).
    pub fn root(&self) -> String {
        self.key("")
    }

    pub fn start_multipart(&self, key: &str) -> Result<String> {
        let response = self
            .encrypting
            .initiate_multipart_upload(key, CONTENT_TYPE_DUMP)
            .map_err(|e| self.err(format!("starting a multipart upload of {key}"), e))?;
        Ok(response.upload_id)
    }

    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        data: &[u8],
    ) -> Result<Part> {
        self.plain
            .put_multipart_chunk(data, key, number, upload_id, CONTENT_TYPE_DUMP)
            .map_err(|e| self.err(format!("uploading part {number} of {key}"), e))
    }

    pub fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<Part>) -> Result<()> {
        let response = self
            .plain
            .complete_multipart_upload(key, upload_id, parts)
            .map_err(|e| self.err(format!("completing the multipart upload of {key}"), e))?;
        check_status(response.status_code(), || {
            format!("completing the multipart upload of {key}")
        })
    }

    pub fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.plain
            .abort_upload(key, upload_id)
            .map_err(|e| self.err(format!("aborting the multipart upload of {key}"), e))
    }

    /// A small object in one PUT (with the SSE headers).
    pub fn put_small(&self, key: &str, data: &[u8], content_type: &str) -> Result<()> {
        let response = self
            .encrypting
            .put_object_with_content_type(key, data, content_type)
            .map_err(|e| self.err(format!("uploading {key}"), e))?;
        check_status(response.status_code(), || format!("uploading {key}"))
    }

    /// A small object in one PUT, only if the condition holds (S3's conditional writes).
    /// A refused condition is told apart from every other failure, whose outcome is
    /// unknown: a timeout or a 5xx may or may not have written the object.
    pub fn put_small_if(
        &self,
        key: &str,
        data: &[u8],
        content_type: &str,
        condition: ConditionalPut<'_>,
    ) -> std::result::Result<(), PutIfError> {
        let (header, value) = match condition {
            ConditionalPut::IfNoneMatch => ("If-None-Match", "*"),
            ConditionalPut::IfMatch(etag) => ("If-Match", etag),
        };
        // An ETag is a quoted token of visible ASCII; anything else did not come from S3
        // and must not reach a header (rust-s3 would panic on it).
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(PutIfError::PreconditionFailed(0));
        }
        let mut bucket = self.encrypting.clone();
        bucket.add_header(header, value);
        match bucket.put_object_with_content_type(key, data, content_type) {
            Ok(response) if (200..300).contains(&response.status_code()) => Ok(()),
            Ok(response) if is_refused_condition(response.status_code()) => {
                Err(PutIfError::PreconditionFailed(response.status_code()))
            }
            Err(S3Error::HttpFailWithBody(status, _)) if is_refused_condition(status) => {
                Err(PutIfError::PreconditionFailed(status))
            }
            Ok(response) => Err(PutIfError::Unknown(Error::other(format!(
                "uploading {key} (bucket {}): S3 answered {}",
                self.bucket_name,
                response.status_code()
            )))),
            Err(e) => Err(PutIfError::Unknown(
                self.err(format!("uploading {key} conditionally"), e),
            )),
        }
    }

    /// A small object's bytes and ETag, or `None` when it does not exist.
    pub fn get_small_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        match self.plain.get_object(key) {
            Ok(response) if response.status_code() == 404 => Ok(None),
            Ok(response) => {
                check_status(response.status_code(), || format!("downloading {key}"))?;
                let etag = response
                    .headers()
                    .into_iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("etag"))
                    .map(|(_, value)| value)
                    .ok_or_else(|| {
                        Error::other(format!(
                            "downloading {key} (bucket {}): S3 sent no ETag",
                            self.bucket_name
                        ))
                    })?;
                Ok(Some((response.to_vec(), etag)))
            }
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(self.err(format!("downloading {key}"), e)),
        }
    }

    /// A small object's bytes, or `None` when it does not exist.
    pub fn get_small(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.plain.get_object(key) {
            Ok(response) if response.status_code() == 404 => Ok(None),
            Ok(response) => {
                check_status(response.status_code(), || format!("downloading {key}"))?;
                Ok(Some(response.to_vec()))
            }
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(self.err(format!("downloading {key}"), e)),
        }
    }

    /// Streams an object into `writer` (nothing buffered beyond the HTTP client's).
    pub fn get_to_writer(&self, key: &str, writer: &mut (impl Write + Send)) -> Result<()> {
        let status = self
            .streaming
            .get_object_to_writer(key, writer)
            .map_err(|e| self.err(format!("downloading {key}"), e))?;
        check_status(status, || format!("downloading {key}"))
    }

    pub fn head(&self, key: &str) -> Result<Option<ObjectHead>> {
        match self.plain.head_object(key) {
            Ok((_, 404)) | Err(S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Ok((head, status)) => {
                check_status(status, || format!("reading the metadata of {key}"))?;
                let size = head.content_length.unwrap_or(-1);
                let size = u64::try_from(size)
                    .map_err(|_| Error::other(format!("S3 reported no size for {key} (HEAD)")))?;
                Ok(Some(ObjectHead {
                    size,
                    encryption: head.server_side_encryption,
                    kms_key_id: head.ssekms_key_id,
                }))
            }
            Err(e) => Err(self.err(format!("reading the metadata of {key}"), e)),
        }
    }

    /// Every object whose key starts with `prefix` (all pages).
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let pages = self
            .plain
            .list(prefix.to_owned(), None)
            .map_err(|e| self.err(format!("listing s3://{}/{prefix}", self.bucket_name), e))?;
        Ok(pages
            .into_iter()
            .flat_map(|page| page.contents)
            .map(|object| ObjectInfo {
                key: object.key,
                size: object.size,
            })
            .collect())
    }

    /// Multipart uploads started under `prefix` and never completed or aborted.
    pub fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        let pages = self
            .plain
            .list_multiparts_uploads(Some(prefix), None)
            .map_err(|e| self.err(format!("listing multipart uploads under {prefix}"), e))?;
        Ok(pages
            .into_iter()
            .flat_map(|page| page.uploads)
            .map(|upload| PendingUpload {
                key: upload.key,
                upload_id: upload.id,
            })
            .collect())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        match self.plain.delete_object(key) {
            Ok(response) => check_status(response.status_code(), || format!("deleting {key}")),
            Err(S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(self.err(format!("deleting {key}"), e)),
        }
    }

    fn err(&self, context: String, source: S3Error) -> Error {
        Error::storage(format!("{context} (bucket {})", self.bucket_name), source)
    }
}

/// The condition of [`ObjectStore::put_small_if`].
#[derive(Debug, Clone, Copy)]
pub enum ConditionalPut<'a> {
    /// Only if no object has the key (`If-None-Match: *`).
    IfNoneMatch,
    /// Only if the object is still the version with this ETag (`If-Match`).
    IfMatch(&'a str),
}

/// Why a conditional PUT did not write.
#[derive(Debug)]
pub enum PutIfError {
    /// Certainly not written: 412 (the condition failed), 409 (a concurrent conditional
    /// write won), 404 (`If-Match` on an object that is gone); 0 for an ETag that could
    /// not be sent.
    PreconditionFailed(u16),
    /// Maybe written.
    Unknown(Error),
}

fn is_refused_condition(status: u16) -> bool {
    matches!(status, 404 | 409 | 412)
}

fn check_status(status: u16, context: impl FnOnce() -> String) -> Result<()> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Error::other(format!("{}: S3 answered {status}", context())))
    }
}
