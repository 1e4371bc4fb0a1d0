//! The IDX/MNIST reader: good files load; damaged ones give one error naming the file and the problem.

use kiln::data::{idx::read_idx, mnist};
use std::io::Write;

/// A test's own temporary folder, removed when dropped.
fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn idx_bytes(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, kind, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn reads_raw_and_gzip_and_scales_pixels() {
    let tmp = dir();
    let d = tmp.path();
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 8) as u8).collect();
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(8, &[2, 4, 4], &pixels)).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte.gz"), gzip(&idx_bytes(8, &[2], &[3, 9]))).unwrap();
    let s = mnist::load_split(d, "train").unwrap();
    assert_eq!(s.x.shape(), [2, 4, 4, 1]);
    assert_eq!(s.x.data()[1], 8.0 / 255.0);
    assert_eq!(s.labels, [3, 9]);
    assert_eq!(s.y.shape(), [2, 10]);
    assert_eq!(s.y.data()[3], 1.0);
    assert_eq!(s.y.data()[19], 1.0);
}

#[test]
fn the_shipped_mnist_files_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist");
    let test = mnist::load_split(root, "t10k").unwrap();
    assert_eq!(test.x.shape(), [10_000, 28, 28, 1]);
    assert_eq!(&test.labels[..5], [7, 2, 1, 0, 4]);
}

#[test]
fn damaged_files_are_named_with_the_problem() {
    let tmp = dir();
    let d = tmp.path();
    let path = d.join("t.idx");
    let check = |bytes: Vec<u8>, want: &str| {
        std::fs::write(&path, bytes).unwrap();
        let e = read_idx(&path).err().expect("must fail").to_string();
        assert!(e.contains("t.idx") && e.contains(want), "{e}");
    };
    check(idx_bytes(8, &[3, 2, 2], &[0; 7]), "truncated IDX file");
    check(idx_bytes(8, &[3], &[1, 2]), "truncated IDX file");
    check(vec![0x12, 0x34, 0x08, 0x03, 0, 0], "magic number 0x12340803");
    check(vec![0, 0], "too short");
    check(idx_bytes(0x0d, &[1], &[0; 4]), "type code 0x0d");
    check(vec![0x1f, 0x8b, 1, 2, 3], "corrupt gzip");
    let e = read_idx(d.join("nope")).err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("no such file"), "{e}");
}

#[test]
fn mismatched_or_missing_files_are_reported() {
    let tmp = dir();
    let d = tmp.path();
    std::fs::write(d.join("train-images-idx3-ubyte"), idx_bytes(8, &[2, 2, 2], &[0; 8])).unwrap();
    let e = mnist::load_split(d, "train").err().unwrap().to_string();
    assert!(e.contains("train-labels-idx1-ubyte"), "{e}");
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(8, &[3], &[1, 2, 3])).unwrap();
    let e = mnist::load_split(d, "train").err().unwrap().to_string();
    assert!(e.contains("3 labels for 2 images"), "{e}");
    std::fs::write(d.join("train-labels-idx1-ubyte"), idx_bytes(8, &[2], &[1, 12])).unwrap();
    let e = mnist::load_split(d, "train").err().unwrap().to_string();
    assert!(e.contains("label 12"), "{e}");
    let e = mnist::load_split(d.join("absent"), "train").err().unwrap().to_string();
    assert!(e.contains("absent") && e.contains("no such folder"), "{e}");
    // A file where the folder should be (the images file itself, say) is told apart.
    let e = mnist::load_split(d.join("train-labels-idx1-ubyte"), "train").err().unwrap().to_string();
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("is a file, not a folder"), "{e}");
}
