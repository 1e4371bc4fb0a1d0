//! The IDX format of the MNIST files: a magic number (two zero bytes, a type code, the number of
//! dimensions), the sizes as big-endian u32, then the values. Read raw or gzip-compressed.

use kiln_core::{Error, Result};
use std::io::Read;
use std::path::Path;

/// An IDX file of unsigned bytes.
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type code 0x08), gunzipping it when it starts with the gzip magic.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::format(path, format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|m| Error::format(path, m))
}

fn parse_idx(b: &[u8]) -> std::result::Result<Idx, String> {
    if b.len() < 4 {
        return Err(format!("not an IDX file: {} bytes, too short for a header", b.len()));
    }
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (zero, kind, ndim) = (u16::from_be_bytes([b[0], b[1]]), b[2], b[3] as usize);
    if zero != 0 || ndim == 0 || ndim > 4 {
        return Err(format!(
            "not an IDX file: magic number 0x{magic:08x}, expected 0x00000801 (labels) or 0x00000803 (images)"
        ));
    }
    if kind != 0x08 {
        return Err(format!("IDX type code 0x{kind:02x} is not supported (only unsigned bytes, 0x08)"));
    }
    let header = 4 + 4 * ndim;
    if b.len() < header {
        return Err(format!("truncated IDX file: the header needs {header} bytes, the file has {}", b.len()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as usize)
        .collect();
    let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("IDX sizes overflow")?;
    let have = b.len() - header;
    if have < want {
        return Err(format!("truncated IDX file: sizes {dims:?} need {want} bytes of data, found {have}"));
    }
    if have > want {
        return Err(format!("IDX file has {} bytes after the {want} its sizes {dims:?} announce", have - want));
    }
    Ok(Idx { dims, data: b[header..].to_vec() })
}
