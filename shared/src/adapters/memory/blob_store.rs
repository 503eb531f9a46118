//! [`BlobStore`] in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::poisoned;
use crate::ports::{BlobStore, PortError};

/// [`BlobStore`] in memory.
#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, Bytes>>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), PortError> {
        self.blobs.lock().map_err(|_| poisoned("memory blob store"))?.insert(key.to_owned(), body);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        Ok(self.blobs.lock().map_err(|_| poisoned("memory blob store"))?.get(key).cloned())
    }
}
