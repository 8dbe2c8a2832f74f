//! The instrumenting `ObjectStoreRegistry`.

use crate::config::{ObjectStoreConfig, SUPPORTED_SCHEMES};
use crate::counting::CountingStore;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreRegistry;
use object_store::ObjectStore;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use url::Url;

/// Why a URL cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The scheme is not one this crate knows, or the config disables it.
    #[error(
        "object store scheme `{scheme}` (in `{url}`) is not {reason}; enabled schemes: {enabled} \
         (configure them in object_store.schemes; supported: {supported})"
    )]
    Scheme {
        /// The scheme.
        scheme: String,
        /// The URL asked for.
        url: String,
        /// "supported" or "enabled".
        reason: &'static str,
        /// The enabled schemes, comma separated.
        enabled: String,
        /// Every supported scheme, comma separated.
        supported: String,
    },
    /// The scheme needs a cargo feature this build lacks.
    #[error(
        "building a store for `{url}` needs the `{feature}` feature of \
         dftrace-object-store-registry, which this build does not have"
    )]
    MissingFeature {
        /// The URL asked for.
        url: String,
        /// The feature.
        feature: &'static str,
    },
    /// `object_store` could not build a store from the URL and options.
    #[error("cannot build an object store for `{url}`: {source}")]
    Build {
        /// The URL asked for.
        url: String,
        /// What `object_store` reported.
        source: object_store::Error,
    },
}

/// Wraps `inner` so every store it hands out is traced (one span per request,
/// named `<prefix>.<operation>`) and counted per query, exactly once.
pub fn instrument_registry(
    inner: Arc<dyn ObjectStoreRegistry>,
    config: &ObjectStoreConfig,
) -> Arc<dyn ObjectStoreRegistry> {
    Arc::new(InstrumentedRegistry {
        inner,
        config: config.clone(),
        wrapped: Mutex::new(Vec::new()),
    })
}

#[derive(Debug)]
struct InstrumentedRegistry {
    inner: Arc<dyn ObjectStoreRegistry>,
    config: ObjectStoreConfig,
    /// The stores this registry made, to never wrap one twice. Weak, so a
    /// dropped store's address can never be mistaken for a live one.
    wrapped: Mutex<Vec<Weak<dyn ObjectStore>>>,
}

impl InstrumentedRegistry {
    fn is_wrapped(&self, store: &Arc<dyn ObjectStore>) -> bool {
        let mut wrapped = self.wrapped.lock().unwrap_or_else(PoisonError::into_inner);
        wrapped.retain(|weak| weak.strong_count() > 0);
        wrapped
            .iter()
            .any(|weak| weak.upgrade().is_some_and(|w| Arc::ptr_eq(&w, store)))
    }

    fn wrap(&self, scheme: &str, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        if self.is_wrapped(&store) {
            return store;
        }
        let counted: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(store));
        let traced = instrumented_object_store::instrument_object_store(
            counted,
            &self.config.prefix_for(scheme),
        );
        self.wrapped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&traced));
        traced
    }

    fn check_scheme(&self, url: &Url) -> Result<(), StoreError> {
        let scheme = url.scheme();
        let error = |reason| StoreError::Scheme {
            scheme: scheme.to_owned(),
            url: url.to_string(),
            reason,
            enabled: self.config.schemes.join(", "),
            supported: SUPPORTED_SCHEMES.join(", "),
        };
        if !SUPPORTED_SCHEMES.contains(&scheme) {
            return Err(error("supported"));
        }
        if !self.config.schemes.iter().any(|s| s == scheme) {
            return Err(error("enabled"));
        }
        Ok(())
    }

    fn build(&self, url: &Url) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let feature = match url.scheme() {
            "s3" | "s3a" => Some(("aws", cfg!(feature = "aws"))),
            "gs" | "gcs" => Some(("gcp", cfg!(feature = "gcp"))),
            "az" | "abfs" | "abfss" | "azure" => Some(("azure", cfg!(feature = "azure"))),
            "http" | "https" => Some(("http", cfg!(feature = "http"))),
            _ => None,
        };
        if let Some((feature, false)) = feature {
            return Err(StoreError::MissingFeature {
                url: url.to_string(),
                feature,
            });
        }
        let options = self
            .config
            .options
            .get(url.scheme())
            .cloned()
            .unwrap_or_default();
        let (store, _) =
            object_store::parse_url_opts(url, options).map_err(|source| StoreError::Build {
                url: url.to_string(),
                source,
            })?;
        Ok(Arc::from(store))
    }
}

fn external(error: StoreError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

impl ObjectStoreRegistry for InstrumentedRegistry {
    /// Wraps `store` (unless this registry made it) and registers the wrapper.
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let wrapped = self.wrap(url.scheme(), store);
        self.inner.register_store(url, wrapped)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    /// The wrapped store for `url`. A store registered in the inner registry
    /// before this one was installed (DataFusion pre-registers `file://`) is
    /// wrapped on first use and registered back, wrapped; with `auto_build`,
    /// a URL nobody registered gets a store built for it.
    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.check_scheme(url).map_err(external)?;
        match self.inner.get_store(url) {
            Ok(store) if self.is_wrapped(&store) => Ok(store),
            Ok(store) => {
                let wrapped = self.wrap(url.scheme(), store);
                self.inner.register_store(url, Arc::clone(&wrapped));
                Ok(wrapped)
            }
            Err(error) if !self.config.auto_build => Err(error),
            Err(_) => {
                let store = self.wrap(url.scheme(), self.build(url).map_err(external)?);
                self.inner.register_store(url, Arc::clone(&store));
                Ok(store)
            }
        }
    }
}
