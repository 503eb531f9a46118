//! The `BlobStore` contract, for the memory and S3 adapters alike.

use std::sync::Arc;

use bytes::Bytes;
use chorus::ports::BlobStore;

/// One test per clause against the stores `$make` returns (an `async fn() -> Arc<dyn
/// BlobStore>`, called once per test), in `mod $adapter`; attributes after the factory go on
/// every test.
#[macro_export]
macro_rules! blob_store_contract {
    ($adapter:ident, $make:path $(, #[$attr:meta])* $(,)?) => {
        $crate::contract_tests!(blob_store_contract, [tokio::test], $adapter, $make, [$(#[$attr])*], [
            a_blob_reads_back_byte_for_byte,
            an_unknown_key_is_no_blob_not_an_error,
            an_empty_blob_reads_back,
        ]);
    };
}

/// Keys of their own for each check: stores on an emulator share one bucket.
fn fresh_prefix() -> String {
    format!("contract/{:016x}", fastrand::u64(..))
}

pub async fn a_blob_reads_back_byte_for_byte(store: Arc<dyn BlobStore>) {
    let key = format!("{}/output.json", fresh_prefix());
    let body = Bytes::from(vec![b'x'; 300 * 1024]);
    store.put(&key, body.clone()).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(body), "a blob reads back byte for byte");
}

pub async fn an_unknown_key_is_no_blob_not_an_error(store: Arc<dyn BlobStore>) {
    let missing = format!("{}/missing.json", fresh_prefix());
    assert_eq!(store.get(&missing).await.unwrap(), None, "an unknown key is no blob, not an error");
}

pub async fn an_empty_blob_reads_back(store: Arc<dyn BlobStore>) {
    let empty = format!("{}/empty", fresh_prefix());
    store.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(store.get(&empty).await.unwrap(), Some(Bytes::new()));
}
