//! Benchmarks used by `bench/image.sh` (prints figures, asserts nothing).
//!
//! `unpack_bench unpack <layer blob> <dest dir>`: time `unpack_layer` (digest
//! checks and syncfs included) on a tar / tar.gz / tar.zst blob.
//! `unpack_bench pull <image ref> <scratch dir>`: time a fetch-only pull into
//! an empty content store, then a full `ensure` (fetch + unpack) into another.
//! `unpack_bench import <archive> <scratch dir> <image ref>`: time importing an
//! image archive into an empty store and unpacking its layers (what
//! `podman load` does), as one figure and as its two steps.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use berth_contract::{Images, PullPolicy};
use berth_image::content::{ContentStore, Digest};
use berth_image::locks::KeyedLocks;
use berth_image::pull::{Puller, RegistryOptions};
use berth_image::unpack::{Caps, Compression, UnpackLimits, sniff, unpack_layer};
use berth_image::{ImageStore, ImageStoreConfig, Reference};
use sha2::{Digest as _, Sha256};

fn digests(blob: &Path) -> (Digest, Digest) {
    let data = std::fs::read(blob).unwrap();
    let raw: Vec<u8> = match sniff(&data) {
        Compression::None => data.clone(),
        Compression::Gzip => {
            let mut v = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..])
                .read_to_end(&mut v)
                .unwrap();
            v
        }
        Compression::Zstd => zstd::decode_all(&data[..]).unwrap(),
    };
    (
        Digest::of(&data),
        Digest::from_hasher(Sha256::new_with_prefix(&raw)),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("unpack") => {
            let (blob, dest) = (Path::new(&args[2]), Path::new(&args[3]));
            let (bd, diff) = digests(blob);
            let tmp = dest.with_extension("tmp");
            std::fs::create_dir_all(&tmp).unwrap();
            let t = Instant::now();
            let s = unpack_layer(
                blob,
                &bd,
                &diff,
                dest,
                &tmp,
                Caps::detect(),
                UnpackLimits::default(),
            )
            .unwrap();
            let secs = t.elapsed().as_secs_f64();
            std::fs::remove_dir_all(&tmp).unwrap();
            println!(
                "berth unpack: {:.3} s, {} entries, {:.1} MB file data, {:.1} MB/s",
                secs,
                s.entries,
                s.bytes as f64 / 1e6,
                s.bytes as f64 / 1e6 / secs
            );
        }
        Some("pull") => {
            let r = Reference::parse(&args[2]).unwrap();
            let scratch = Path::new(&args[3]);
            let cs = ContentStore::open(&scratch.join("fetch-only")).unwrap();
            let p = Puller::new(RegistryOptions::default());
            let t = Instant::now();
            p.pull(&r, &cs, &KeyedLocks::default()).await.unwrap();
            println!("berth fetch only: {:.3} s", t.elapsed().as_secs_f64());
            let s = ImageStore::open(ImageStoreConfig::new(scratch.join("store")))
                .await
                .unwrap();
            let t = Instant::now();
            let info = s
                .ensure(&r.to_string(), PullPolicy::IfNotPresent)
                .await
                .unwrap();
            println!(
                "berth ensure (fetch + unpack {} layers): {:.3} s",
                info.layers.len(),
                t.elapsed().as_secs_f64()
            );
        }
        Some("import") => {
            let (archive, scratch) = (Path::new(&args[2]), Path::new(&args[3]));
            let s = ImageStore::open(ImageStoreConfig::new(scratch.join("store")))
                .await
                .unwrap();
            let t = Instant::now();
            // import_one also unpacks the layers (commit_image); ensure then
            // only checks the local image
            s.import_one(archive).await.unwrap();
            let imported = t.elapsed().as_secs_f64();
            let info = s.ensure(&args[4], PullPolicy::IfNotPresent).await.unwrap();
            let total = t.elapsed().as_secs_f64();
            println!(
                "berth import: {total:.3} s (import + unpack of {} layers {imported:.3} s, local check {:.3} s)",
                info.layers.len(),
                total - imported
            );
        }
        _ => eprintln!(
            "usage: unpack_bench unpack BLOB DEST | pull REF SCRATCH | import ARCHIVE SCRATCH REF"
        ),
    }
}
