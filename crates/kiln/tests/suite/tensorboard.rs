//! TensorBoard event files: the fixture TensorBoard 2.21 read (tools/check_tensorboard.py) and files kiln
//! writes now have the same record framing, valid CRCs, and the same kinds of events and tags.

use kiln::callbacks::{Callback, EventWriter, TensorBoard, event_file, masked_crc};
use kiln::prelude::*;
use std::path::Path;

/// (step, tag, simple value) of each scalar event and (step, tag, count) of each histogram in a file,
/// decoded from the protocol buffers: Event{2: step, 5: Summary{1: Value{1: tag, 2: float, 5: histo{3: num}}}}.
type Decoded = (Vec<(u64, String, f32)>, Vec<(u64, String, f64)>, Option<String>);

fn decode(path: &Path) -> Decoded {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    /// (field, wire type, payload) of each field of a message.
    fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let (mut out, mut at) = (Vec::new(), 0);
        while at < b.len() {
            let key = varint(b, &mut at);
            let (field, wire) = (key >> 3, key & 7);
            let payload = match wire {
                0 => varint(b, &mut at).to_le_bytes().to_vec(),
                1 => (at..at + 8).map(|i| b[i]).collect::<Vec<_>>(),
                2 => {
                    let n = varint(b, &mut at) as usize;
                    b[at..at + n].to_vec()
                }
                5 => b[at..at + 4].to_vec(),
                w => panic!("unexpected wire type {w}"),
            };
            at += match wire {
                1 => 8,
                2 => payload.len(),
                5 => 4,
                _ => 0,
            };
            out.push((field, wire, payload));
        }
        out
    }
    let (mut scalars, mut histos, mut version) = (Vec::new(), Vec::new(), None);
    for rec in event_file(path).unwrap() {
        let ev = fields(&rec);
        let step = ev.iter().find(|f| f.0 == 2).map_or(0, |f| u64::from_le_bytes(f.2[..8].try_into().unwrap()));
        if let Some(v) = ev.iter().find(|f| f.0 == 3) {
            version = Some(String::from_utf8(v.2.clone()).unwrap());
        }
        for summary in ev.iter().filter(|f| f.0 == 5) {
            for value in fields(&summary.2).iter().filter(|f| f.0 == 1) {
                let vf = fields(&value.2);
                let tag = String::from_utf8(vf.iter().find(|f| f.0 == 1).unwrap().2.clone()).unwrap();
                if let Some(s) = vf.iter().find(|f| f.0 == 2) {
                    scalars.push((step, tag.clone(), f32::from_le_bytes(s.2[..4].try_into().unwrap())));
                }
                if let Some(h) = vf.iter().find(|f| f.0 == 5) {
                    let num = fields(&h.2)
                        .iter()
                        .find(|f| f.0 == 3)
                        .map(|f| f64::from_le_bytes(f.2[..8].try_into().unwrap()));
                    histos.push((step, tag, num.unwrap()));
                }
            }
        }
    }
    (scalars, histos, version)
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard").join(name)
}

#[test]
fn the_fixture_tensorboard_read_decodes_to_what_it_showed() {
    let (scalars, histos, version) = decode(&fixture("train.tfevents"));
    assert_eq!(version.as_deref(), Some("brain.Event:2"));
    let loss: Vec<_> =
        scalars.iter().filter(|s| s.1 == "epoch_loss").map(|s| (s.0, (s.2 * 1e4).round() / 1e4)).collect();
    assert_eq!(loss, [(1, 0.3062), (2, 0.1154)], "as TensorBoard listed them");
    assert_eq!(scalars.iter().filter(|s| s.1 == "batch_loss").count(), 1688 / 100);
    assert_eq!(histos.iter().filter(|h| h.0 == 2).count(), 6);
    assert!(histos.contains(&(2, "conv2d/kernel/histogram".into(), 288.0)));
    let (val, _, _) = decode(&fixture("validation.tfevents"));
    let acc: Vec<_> =
        val.iter().filter(|s| s.1 == "epoch_accuracy").map(|s| (s.0, (s.2 * 1e4).round() / 1e4)).collect();
    assert_eq!(acc, [(1, 0.9803), (2, 0.9827)]);
}

#[test]
fn files_written_now_have_the_fixture_structure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = kiln::core::Rng::new(2);
    let x = Tensor::new(&[64, 4], (0..256).map(|_| rng.uniform() as f32).collect()).unwrap();
    let y = Tensor::new(&[64], (0..64).map(|i| (i % 2) as f32).collect()).unwrap();
    let mut m = Sequential::new(&[4]);
    m.add(Dense::new(8).activation(Activation::Relu)).unwrap();
    m.add(Dense::new(2).activation(Activation::Softmax)).unwrap();
    m.compile(Adam::default(), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy]).unwrap();
    let mut tb = TensorBoard::new(dir).every_n_steps(2);
    let opts = FitOptions { epochs: 3, batch_size: 16, validation_split: 0.25, ..Default::default() };
    let h = m.fit_with(&x, &y, opts, &mut [&mut tb as &mut dyn Callback]).unwrap();
    let file = |sub: &str| std::fs::read_dir(dir.join(sub)).unwrap().next().unwrap().unwrap().path();
    let (scalars, histos, version) = decode(&file("train"));
    assert_eq!(version.as_deref(), Some("brain.Event:2"));
    let tags: std::collections::BTreeSet<_> = scalars.iter().map(|s| s.1.as_str()).collect();
    let want = ["batch_learning_rate", "batch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_loss"];
    assert_eq!(tags, want.into_iter().collect());
    let losses: Vec<f32> = scalars.iter().filter(|s| s.1 == "epoch_loss").map(|s| s.2).collect();
    assert_eq!(losses, h.epochs.iter().map(|e| e.loss as f32).collect::<Vec<_>>());
    assert_eq!(scalars.iter().filter(|s| s.1 == "batch_loss").map(|s| s.0).collect::<Vec<_>>(), [2, 4, 6, 8]);
    assert_eq!(histos.len(), 3 * 4, "one histogram per parameter per epoch");
    let (val, _, _) = decode(&file("validation"));
    assert_eq!(val.iter().filter(|s| s.1 == "epoch_loss").count(), 3);
    // A flipped byte is caught by the CRC.
    let mut bytes = std::fs::read(file("train")).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    let bad = dir.join("bad.tfevents");
    std::fs::write(&bad, &bytes).unwrap();
    assert!(event_file(&bad).unwrap_err().to_string().contains("bad data CRC"));
}

#[test]
fn masked_crc_matches_tensorflow() {
    // TFRecord's masked CRC-32C of the empty string and of "a", as tf.io / crc32c compute them.
    assert_eq!(masked_crc(b""), 0xa282_ead8);
    assert_eq!(crc32c_of_a(), 0xc1d0_4330);
    let _ = EventWriter::create; // part of the public API for custom loggers
}

fn crc32c_of_a() -> u32 {
    // CRC-32C("a") = 0xc1d04330 (RFC 3720 test vectors use the same polynomial).
    let masked = masked_crc(b"a");
    (masked.wrapping_sub(0xa282_ead8)).rotate_left(15)
}
