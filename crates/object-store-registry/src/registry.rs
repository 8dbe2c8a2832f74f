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
         dftrace-object-store-registry, which this build does not have: with the `dftrace` \
         crate, add `features = [\"{facade}\"]` to its line in Cargo.toml; depending on \
         dftrace-object-store-registry directly, `features = [\"{feature}\"]`",
        facade = facade_store_feature(feature)
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

/// The `dftrace` facade's feature that turns on the registry's `feature`.
fn facade_store_feature(feature: &str) -> &'static str {
    match feature {
        "aws" => "s3",
        "gcp" => "gcs",
        "azure" => "azure",
        _ => "http",
    }
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
    /// Each inner store this registry has handed out, with its wrapper, so
    /// a store is wrapped once however often it is asked for. Wrappers are
    /// never registered back into the inner registry: an inner registry that
    /// wraps what it is given (as `datafusion-cli`'s profiling registry does)
    /// would otherwise grow a chain of wrappers.
    wrapped: Mutex<Vec<Wrapped>>,
}

/// An inner store (weakly, so a dropped store's address is never mistaken
/// for a live one) and the wrapper handed out for it.
type Wrapped = (Weak<dyn ObjectStore>, Arc<dyn ObjectStore>);

impl InstrumentedRegistry {
    /// `store` wrapped exactly once: a store this registry made is returned
    /// as it is; an inner store seen before gets the same wrapper again.
    fn wrap(&self, scheme: &str, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        let mut wrapped = self.wrapped.lock().unwrap_or_else(PoisonError::into_inner);
        for (inner, wrapper) in wrapped.iter() {
            if Arc::ptr_eq(wrapper, &store) {
                return store;
            }
            if inner
                .upgrade()
                .is_some_and(|inner| Arc::ptr_eq(&inner, &store))
            {
                return Arc::clone(wrapper);
            }
        }
        let counted: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(Arc::clone(&store)));
        let traced = instrumented_object_store::instrument_object_store(
            counted,
            &self.config.prefix_for(scheme),
        );
        wrapped.push((Arc::downgrade(&store), Arc::clone(&traced)));
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
    /// Registers `store` as it is; it is wrapped when handed out.
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    /// The wrapped store for `url`: whatever the inner registry holds
    /// (registered before or after this registry was installed; DataFusion
    /// pre-registers `file://`), wrapped once; with `auto_build`, a URL
    /// nobody registered gets a store built and registered for it.
    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.check_scheme(url).map_err(external)?;
        match self.inner.get_store(url) {
            Ok(store) => Ok(self.wrap(url.scheme(), store)),
            Err(error) if !self.config.auto_build => Err(error),
            Err(_) => {
                let built = self.build(url).map_err(external)?;
                self.inner.register_store(url, Arc::clone(&built));
                // Hand out what the inner registry now holds (it may have
                // wrapped the built store itself).
                let store = self.inner.get_store(url).unwrap_or(built);
                Ok(self.wrap(url.scheme(), store))
            }
        }
    }
}
