//! A small decorator under each instrumented store: it adds the bytes each
//! request reads or writes to the enclosing query's counters, and marks the
//! storage span as an error when the request fails.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use opentelemetry::trace::Status;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Storage counters of one query, kept in its root span.
#[derive(Debug, Default)]
pub(crate) struct StorageCounters {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    requests: AtomicU64,
}

/// A snapshot of one query's storage counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageTotals {
    /// Bytes returned by `get_opts` (ranges or whole objects) and `get_ranges`.
    pub bytes_read: u64,
    /// Bytes sent by `put_opts` and multipart parts.
    pub bytes_written: u64,
    /// Requests made (gets, puts, parts, lists, copies, renames).
    pub requests: u64,
}

impl StorageCounters {
    fn totals(&self) -> StorageTotals {
        StorageTotals {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

/// The storage totals recorded so far for the query whose root span is
/// `query_span` (`None` when it made no storage request or is not a root
/// query span in a `tracing-subscriber` registry).
pub fn query_storage_totals(query_span: &Span) -> Option<StorageTotals> {
    dftrace_registry::query_state::<StorageCounters>(query_span).map(|c| c.totals())
}

/// Adds a request to the counters of the query enclosing the current span
/// (none outside a query: nothing is counted).
fn count(read: u64, written: u64) {
    if let Some(counters) = dftrace_registry::current_query_state::<StorageCounters>() {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.bytes_read.fetch_add(read, Ordering::Relaxed);
        counters.bytes_written.fetch_add(written, Ordering::Relaxed);
    }
}

/// Counts a finished request and, on failure, marks the current span (the
/// instrumented store's span for this request) with an error status. The
/// error itself passes through unchanged.
fn observe<T>(result: Result<T>, bytes: impl FnOnce(&T) -> (u64, u64)) -> Result<T> {
    match &result {
        Ok(value) => {
            let (read, written) = bytes(value);
            count(read, written);
        }
        Err(error) => {
            count(0, 0);
            Span::current().set_status(Status::error(error.to_string()));
        }
    }
    result
}

/// The decorator. Display and Debug show the inner store.
pub(crate) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
}

impl CountingStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore { inner }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let length = payload.content_length() as u64;
        observe(self.inner.put_opts(location, payload, opts).await, |_| {
            (0, length)
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = observe(self.inner.put_multipart_opts(location, opts).await, |_| {
            (0, 0)
        })?;
        Ok(Box::new(CountingUpload { inner: upload }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        observe(self.inner.get_opts(location, options).await, |result| {
            (
                if head {
                    0
                } else {
                    result.range.end - result.range.start
                },
                0,
            )
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        observe(self.inner.get_ranges(location, ranges).await, |parts| {
            (parts.iter().map(|part| part.len() as u64).sum(), 0)
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        count(0, 0);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        count(0, 0);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        observe(self.inner.list_with_delimiter(prefix).await, |_| (0, 0))
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        observe(self.inner.copy_opts(from, to, options).await, |_| (0, 0))
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        observe(self.inner.rename_opts(from, to, options).await, |_| (0, 0))
    }
}

/// Counts the bytes of each multipart part.
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let length = data.content_length() as u64;
        let part = self.inner.put_part(data);
        Box::pin(async move { observe(part.await, |_| (0, length)) })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        observe(self.inner.complete().await, |_| (0, 0))
    }

    async fn abort(&mut self) -> Result<()> {
        observe(self.inner.abort().await, |_| (0, 0))
    }
}
