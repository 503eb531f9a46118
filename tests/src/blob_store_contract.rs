//! The `BlobStore` contract, for the memory and S3 adapters alike.

use bytes::Bytes;
use chorus::ports::BlobStore;

/// Runs every check against `store`.
pub async fn check_blob_store(store: &dyn BlobStore) {
    let prefix = format!("contract/{:016x}", fastrand::u64(..));

    let key = format!("{prefix}/output.json");
    let body = Bytes::from(vec![b'x'; 300 * 1024]);
    store.put(&key, body.clone()).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(body), "a blob reads back byte for byte");

    let missing = format!("{prefix}/missing.json");
    assert_eq!(store.get(&missing).await.unwrap(), None, "an unknown key is no blob, not an error");

    let empty = format!("{prefix}/empty");
    store.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(store.get(&empty).await.unwrap(), Some(Bytes::new()));
}
