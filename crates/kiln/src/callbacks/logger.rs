//! Per-epoch metric logs: a CSV file (Keras's CSVLogger: a header row, then one row per epoch) and a JSON
//! lines file (one object per epoch), both appended to, so a resumed run continues its log. Each line is
//! flushed when written, so a crash loses at most the epoch in progress.

use super::{Callback, Signal};
use crate::model::Sequential;
use crate::train::EpochLog;
use kiln_core::{Error, Result};
use std::io::Write;
use std::path::PathBuf;

fn append(path: &PathBuf, line: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, &e))?;
    f.write_all(line.as_bytes()).map_err(|e| Error::io(path, &e))
}

pub struct CsvLogger {
    pub path: PathBuf,
}

impl CsvLogger {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger { path: path.into() }
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> String {
        format!("csv_logger({})", self.path.display())
    }

    fn on_epoch_end(&mut self, _model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        let names = log.names();
        let fresh = std::fs::metadata(&self.path).map(|m| m.len() == 0).unwrap_or(true);
        let mut text = String::new();
        if fresh {
            text += &format!("epoch,{}\n", names.join(","));
        }
        let values: Vec<String> = names.iter().map(|n| log.get(n).map(|v| v.to_string()).unwrap_or_default()).collect();
        text += &format!("{},{}\n", log.epoch, values.join(","));
        append(&self.path, &text)?;
        Ok(Signal::Continue)
    }
}

pub struct JsonLogger {
    pub path: PathBuf,
}

impl JsonLogger {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonLogger { path: path.into() }
    }
}

impl Callback for JsonLogger {
    fn name(&self) -> String {
        format!("json_logger({})", self.path.display())
    }

    fn on_epoch_end(&mut self, _model: &mut Sequential, log: &EpochLog) -> Result<Signal> {
        let mut obj = serde_json::Map::new();
        obj.insert("epoch".into(), log.epoch.into());
        for n in log.names() {
            obj.insert(n.clone(), log.get(&n).into());
        }
        obj.insert("seconds".into(), log.seconds.into());
        append(&self.path, &format!("{}\n", serde_json::Value::Object(obj)))?;
        Ok(Signal::Continue)
    }
}
