//! TensorBoard event files, written by hand: TensorBoard reads a file of records, each a little-endian u64
//! length, its masked CRC-32C, the bytes of one `Event` protocol buffer, and their masked CRC-32C. The few
//! message fields kiln needs (wall time, step, file version, scalar and histogram summaries) are encoded
//! here directly rather than through generated protobuf code.
//!
//! Like Keras, a run folder gets `train/` and `validation/` subfolders, so TensorBoard draws the training
//! and validation curves of each tag (`epoch_loss`, `epoch_accuracy`, ...) on one chart.

use super::{Callback, Signal};
use crate::model::Sequential;
use crate::train::{EpochLog, History};
use kiln_core::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One events file being written.
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.<host>.kiln.<pid>` and writes the file-version record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let name = format!("events.out.tfevents.{}.{}.kiln.{}", now.as_secs(), host, std::process::id());
        let path = dir.join(name);
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, &e))?;
        let mut w = EventWriter { file, path };
        let mut ev = event_header(wall_time(), 0);
        bytes_field(&mut ev, 3, b"brain.Event:2");
        w.record(&ev)?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scalar(&mut self, tag: &str, step: u64, value: f32) -> Result<()> {
        let mut v = Vec::new();
        bytes_field(&mut v, 1, tag.as_bytes());
        v.push(0x15); // field 2 (simple_value), 32-bit
        v.extend_from_slice(&value.to_le_bytes());
        self.summary(step, &v)
    }

    /// A histogram of `values` with 30 equal-width buckets over their range.
    pub fn histogram(&mut self, tag: &str, step: u64, values: &[f32]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v as f64), h.max(v as f64)));
        let n = 30;
        let width = if hi > lo { (hi - lo) / n as f64 } else { 1.0 };
        let mut counts = vec![0.0f64; n];
        for &v in values {
            counts[(((v as f64 - lo) / width) as usize).min(n - 1)] += 1.0;
        }
        let mut h = Vec::new();
        for (field, x) in [
            (1, lo),
            (2, hi),
            (3, values.len() as f64),
            (4, values.iter().map(|&v| v as f64).sum()),
            (5, values.iter().map(|&v| v as f64 * v as f64).sum()),
        ] {
            h.push((field << 3) | 1);
            h.extend_from_slice(&x.to_le_bytes());
        }
        let limits: Vec<u8> = (1..=n).flat_map(|i| (lo + width * i as f64).to_le_bytes()).collect();
        let buckets: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        bytes_field(&mut h, 6, &limits);
        bytes_field(&mut h, 7, &buckets);
        let mut v = Vec::new();
        bytes_field(&mut v, 1, tag.as_bytes());
        bytes_field(&mut v, 5, &h);
        self.summary(step, &v)
    }

    /// An Event with a Summary holding one Summary.Value (already encoded).
    fn summary(&mut self, step: u64, value: &[u8]) -> Result<()> {
        let mut summary = Vec::new();
        bytes_field(&mut summary, 1, value);
        let mut ev = event_header(wall_time(), step);
        bytes_field(&mut ev, 5, &summary);
        self.record(&ev)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(data);
        rec.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&rec).and_then(|_| self.file.flush()).map_err(|e| Error::io(&self.path, &e))
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Event fields 1 (wall_time, double) and 2 (step, varint).
fn event_header(wall: f64, step: u64) -> Vec<u8> {
    let mut ev = vec![0x09];
    ev.extend_from_slice(&wall.to_le_bytes());
    ev.push(0x10);
    varint(&mut ev, step);
    ev
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field (strings, bytes, sub-messages, packed repeated numbers).
fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// TFRecord's CRC: CRC-32C, rotated and offset so that CRCs of CRCs stay well distributed.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Reads back the records of an events file, checking each length and data CRC; returns the data of
/// each record (the encoded Events). For tests and tools.
pub fn event_file(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    let bad = |m: String| Error::format(path, m);
    let (mut out, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or_else(|| bad(format!("truncated record header at byte {at}")))?;
        let len = u64::from_le_bytes(head[..8].try_into().unwrap()) as usize;
        if masked_crc(&head[..8]) != u32::from_le_bytes(head[8..12].try_into().unwrap()) {
            return Err(bad(format!("bad length CRC at byte {at}")));
        }
        let data = bytes.get(at + 12..at + 12 + len).ok_or_else(|| bad(format!("truncated record at byte {at}")))?;
        let crc = bytes.get(at + 12 + len..at + 16 + len).ok_or_else(|| bad(format!("missing CRC at byte {at}")))?;
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(bad(format!("bad data CRC at byte {at}")));
        }
        out.push(data.to_vec());
        at += 16 + len;
    }
    Ok(out)
}

/// Writes TensorBoard event files under `log_dir`: `train/` gets the batch's loss and the learning rate every
/// `every_n_steps` steps (`batch_loss`, `batch_learning_rate`), and every epoch's training metrics, learning rate and (optionally) weight histograms;
/// `validation/` gets the validation metrics, under the same `epoch_*` tags.
pub struct TensorBoard {
    pub log_dir: PathBuf,
    pub every_n_steps: u64,
    pub histograms: bool,
    train: Option<EventWriter>,
    validation: Option<EventWriter>,
}

impl TensorBoard {
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        TensorBoard { log_dir: log_dir.into(), every_n_steps: 100, histograms: true, train: None, validation: None }
    }
    pub fn every_n_steps(mut self, n: u64) -> Self {
        self.every_n_steps = n;
        self
    }
    pub fn histograms(mut self, on: bool) -> Self {
        self.histograms = on;
        self
    }
}

impl Callback for TensorBoard {
    fn name(&self) -> String {
        format!("tensorboard({})", self.log_dir.display())
    }

    fn on_train_begin(&mut self, _model: &mut Sequential) -> Result<()> {
        self.train = Some(EventWriter::create(&self.log_dir.join("train"))?);
        self.validation = Some(EventWriter::create(&self.log_dir.join("validation"))?);
        Ok(())
    }

    fn on_batch_end(&mut self, model: &mut Sequential, step: u64, loss: f64) -> Result<()> {
        if let Some(w) = &mut self.train
            && self.every_n_steps > 0
            && step.is_multiple_of(self.every_n_steps)
        {
            w.scalar("batch_loss", step, loss as f32)?;
            w.scalar("batch_learning_rate", step, model.learning_rate().unwrap_or(0.0))?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        let epoch = log.epoch as u64;
        if let Some(w) = &mut self.train {
            for name in log.names() {
                let v = log.get(&name).unwrap_or(f64::NAN) as f32;
                match name.strip_prefix("val_") {
                    Some(metric) => {
                        if let Some(vw) = &mut self.validation {
                            vw.scalar(&format!("epoch_{metric}"), epoch, v)?;
                        }
                    }
                    None => w.scalar(&format!("epoch_{name}"), epoch, v)?,
                }
            }
            if self.histograms {
                for p in model.graph().params() {
                    w.histogram(&format!("{}/histogram", p.name.replace('.', "/")), epoch, &p.value)?;
                }
            }
        }
        Ok(Signal::Continue)
    }

    fn on_train_end(&mut self, _model: &mut Sequential, _history: &History) -> Result<()> {
        self.train = None;
        self.validation = None;
        Ok(())
    }
}
