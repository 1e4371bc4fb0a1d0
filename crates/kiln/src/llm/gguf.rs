//! Reading GGUF files (llama.cpp's format, versions 2 and 3): the header, the metadata (typed key-value
//! pairs, arrays included), the tensor infos, and the tensors' bytes at their aligned offsets. The layout,
//! all little-endian:
//!
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, type: u32, value)          string = len u64 + UTF-8 bytes
//! tensor_count × (name: string, n_dims u32, dims: n_dims × u64, type u32, offset u64)
//! padding to `general.alignment` (32 unless set) | tensor data (each offset from here, aligned)
//! ```
//!
//! A tensor's dims run innermost first (ggml's ne[0] is the row length), so a linear layer [out, in] is
//! stored with dims [in, out]. Every count and offset is checked against the file's size before use, so a
//! damaged file is one error naming it, never a panic or a huge allocation.
//!
//! `Gguf::open` reads the header alone and each tensor's bytes when it is asked for, so a model loads in its
//! own size plus its largest tensor: reading the whole file first and copying the blocks out of it had kiln's
//! peak memory at 236 MiB on SmolLM2-135M Q4_1 (a 98 MB file) where llama.cpp, which maps the file, took 161.

use crate::{Error, Result};
use kiln_core::DType;
use kiln_core::qdot::Q8Rows;
use kiln_core::quant::QMatrix;
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Bool(_) => "a boolean",
            Value::F32(_) | Value::F64(_) => "a float",
            _ => "an integer",
        }
    }
}

/// Where a tensor is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Innermost first, as ggml's ne.
    pub dims: Vec<usize>,
    /// ggml's type number (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16, ...).
    pub ggml_type: u32,
    /// From the start of the tensor data.
    pub offset: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// kiln's type for a ggml type number, when kiln reads it.
pub fn dtype_of(ggml_type: u32) -> Option<DType> {
    match ggml_type {
        0 => Some(DType::F32),
        1 => Some(DType::F16),
        2 => Some(DType::Q4_0),
        3 => Some(DType::Q4_1),
        8 => Some(DType::Q8_0),
        30 => Some(DType::BF16),
        _ => None,
    }
}

/// ggml's name of a type number, for messages.
fn ggml_type_name(t: u32) -> String {
    let names = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
        "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16",
        "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    names.get(t as usize).map_or(format!("type {t}"), |n| n.to_string())
}

/// Bytes of `elements` values of a type kiln reads.
fn byte_size(dtype: DType, elements: usize) -> Option<usize> {
    let (block, bytes) = match dtype {
        DType::F32 => (1, 4),
        DType::F16 | DType::BF16 => (1, 2),
        DType::Q8_0 => (32, 34),
        DType::Q4_0 => (32, 18),
        DType::Q4_1 => (32, 20),
        DType::F64 => (1, 8),
    };
    elements.is_multiple_of(block).then(|| elements / block * bytes)
}

/// A GGUF file's header, with its tensors' bytes in memory (`from_bytes`) or left in the file (`open`).
pub struct Gguf {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    source: Source,
    /// Where the tensor data begins, in bytes from the start of the file.
    data_start: usize,
}

/// Where the tensors' bytes are.
enum Source {
    Bytes(Vec<u8>),
    /// Locked for each read: a seek and a read are two calls on one cursor.
    File(std::sync::Mutex<File>),
}

/// The first read of a file's header: SmolLM2's (its vocabulary and merges included) is 1.8 MB.
const HEADER_READ: usize = 8 << 20;

/// A cursor over the file's first bytes (`b`, of `len` in all) whose reads fail, naming the file, instead of
/// running past the end; `short` is set when a read ran past `b` but not past the file (more must be read).
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    len: usize,
    short: &'a Cell<bool>,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn bad(&self, what: &str) -> Error {
        Error::Data(format!("{}: not a readable GGUF file ({what} at byte {})", self.path.display(), self.at))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            if self.at.checked_add(n).is_some_and(|e| e <= self.len) {
                self.short.set(true);
            }
            self.bad("cut short")
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of things at least `min_bytes` each, which the rest of the file must be able to hold.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize> {
        let n = self.u64()?;
        let left = self.len.saturating_sub(self.at) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(self.bad(&format!("{what} count {n} larger than the file")));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.count(1, "string length")?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.bad("a string that is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(self.bad("a boolean that is neither 0 nor 1")),
            },
            8 => Value::String(self.string()?),
            9 if depth < 4 => {
                let inner = self.u32()?;
                let n = self.count(1, "array length")?;
                let mut v = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    v.push(self.value(inner, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            _ => return Err(self.bad(&format!("metadata value type {ty}"))),
        })
    }
}

impl Gguf {
    /// Reads and checks the file's header; the tensors are read from the file as they are asked for. A
    /// pipe or other stream, whose size is not known, is read whole.
    pub fn open(path: &Path) -> Result<Gguf> {
        let mut file = File::open(path).map_err(|e| Error::io(path, &e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, &e))?;
        if !meta.is_file() {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(|e| Error::io(path, &e))?;
            return Gguf::from_bytes(path, bytes);
        }
        let len = usize::try_from(meta.len()).map_err(|_| Error::Data(format!("{}: too large", path.display())))?;
        // The header's length is known only once it is read: a prefix first, four times larger while the
        // header runs past it (and only then: any other error is the file's), the whole file at worst.
        let mut prefix = HEADER_READ.min(len);
        loop {
            let mut head = vec![0u8; prefix];
            file.seek(SeekFrom::Start(0)).and_then(|_| file.read_exact(&mut head)).map_err(|e| Error::io(path, &e))?;
            let short = Cell::new(false);
            match Gguf::parse(path, &head, len, &short) {
                Ok((version, metadata, tensors, data_start)) => {
                    let source = Source::File(std::sync::Mutex::new(file));
                    return Ok(Gguf { path: path.to_path_buf(), version, metadata, tensors, source, data_start });
                }
                Err(_) if short.get() && prefix < len => prefix = prefix.saturating_mul(4).min(len),
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses a GGUF file's bytes (`path` names it in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Gguf> {
        let (version, metadata, tensors, data_start) = Gguf::parse(path, &bytes, bytes.len(), &Cell::new(false))?;
        Ok(Gguf { path: path.to_path_buf(), version, metadata, tensors, source: Source::Bytes(bytes), data_start })
    }

    /// The header in `bytes` (the file's first bytes; `len` the whole file's): version, metadata, tensor
    /// infos (each checked to lie inside the file) and where the tensor data begins. `short` is set when the
    /// header runs past `bytes`.
    #[allow(clippy::type_complexity)]
    fn parse(
        path: &Path,
        bytes: &[u8],
        len: usize,
        short: &Cell<bool>,
    ) -> Result<(u32, BTreeMap<String, Value>, Vec<TensorInfo>, usize)> {
        let mut r = Reader { b: bytes, at: 0, len, short, path };
        if r.take(4).ok() != Some(b"GGUF".as_slice()) {
            return Err(Error::Data(format!(
                "{}: not a GGUF file (it does not start with `GGUF`); kiln generate reads llama.cpp's GGUF models",
                path.display()
            )));
        }
        let version = r.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::Data(format!(
                "{}: GGUF version {version}; kiln reads versions 2 and 3",
                path.display()
            )));
        }
        // The smallest tensor info is 4 + 8 + 4 + 8 + 4 + 8 bytes; a key-value pair at least 8 + 4 + 1.
        let tensor_count = r.count(36, "tensor")?;
        let kv_count = r.count(13, "metadata")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string()?;
            let ty = r.u32()?;
            let v = r.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(r.bad(&format!("tensor `{name}` with {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64()?;
                dims.push(usize::try_from(d).map_err(|_| r.bad("a dimension too large"))?);
            }
            let ggml_type = r.u32()?;
            let offset = usize::try_from(r.u64()?).map_err(|_| r.bad("an offset too large"))?;
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }
        let align = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a as usize,
                _ => return Err(r.bad("general.alignment that is not a power of two")),
            },
        };
        let data_start = r.at.div_ceil(align) * align;
        let data_len = len.saturating_sub(data_start);
        for t in &tensors {
            let elements = t.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let size = match (dtype_of(t.ggml_type), elements) {
                (Some(dt), Some(n)) => byte_size(dt, n),
                _ => None,
            };
            // Types kiln does not read are checked when a tensor of them is asked for.
            if let Some(size) = size
                && (!t.offset.is_multiple_of(align) || t.offset.checked_add(size).is_none_or(|end| end > data_len))
            {
                return Err(Error::Data(format!(
                    "{}: tensor `{}` ({} bytes at offset {}) lies outside the file's {} bytes of tensor data",
                    path.display(),
                    t.name,
                    size,
                    t.offset,
                    data_len
                )));
            }
        }
        Ok((version, metadata, tensors, data_start))
    }

    /// The metadata value of `key`, or the error naming the key.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::Data(format!("{}: the metadata lacks `{key}`", self.path.display())))
    }

    fn wrong(&self, key: &str, want: &str, v: &Value) -> Error {
        Error::Data(format!("{}: metadata `{key}` is {}, expected {want}", self.path.display(), v.kind()))
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    pub fn strings(&self, key: &str) -> Result<Vec<&str>> {
        match self.get(key)? {
            Value::Array(a) => {
                a.iter().map(|v| v.as_str().ok_or_else(|| self.wrong(key, "an array of strings", v))).collect()
            }
            v => Err(self.wrong(key, "an array of strings", v)),
        }
    }

    pub fn integers(&self, key: &str) -> Result<Vec<u64>> {
        match self.get(key)? {
            Value::Array(a) => {
                a.iter().map(|v| v.as_u64().ok_or_else(|| self.wrong(key, "an array of integers", v))).collect()
            }
            v => Err(self.wrong(key, "an array of integers", v)),
        }
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's type and bytes, its dims checked against `want` (innermost first).
    fn tensor_bytes(&self, name: &str, want: &[usize]) -> Result<(DType, Cow<'_, [u8]>)> {
        let t = self
            .tensor_info(name)
            .ok_or_else(|| Error::Data(format!("{}: the model lacks the tensor `{name}`", self.path.display())))?;
        if t.dims != want {
            return Err(Error::Data(format!(
                "{}: tensor `{name}` is {:?}, but the metadata makes it {want:?}",
                self.path.display(),
                t.dims
            )));
        }
        let dtype = dtype_of(t.ggml_type).ok_or_else(|| {
            Error::Data(format!(
                "{}: tensor `{name}` is {}; kiln reads F32, F16, BF16, Q8_0, Q4_0 and Q4_1",
                self.path.display(),
                ggml_type_name(t.ggml_type)
            ))
        })?;
        let size = byte_size(dtype, t.elements()).ok_or_else(|| {
            Error::Data(format!("{}: tensor `{name}` is not whole blocks of 32", self.path.display()))
        })?;
        let start = self.data_start + t.offset;
        let cut = || Error::Data(format!("{}: tensor `{name}` runs past the end of the file", self.path.display()));
        Ok((
            dtype,
            match &self.source {
                Source::Bytes(b) => Cow::Borrowed(b.get(start..start + size).ok_or_else(cut)?),
                Source::File(f) => {
                    let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                    let mut b = vec![0u8; size];
                    f.seek(SeekFrom::Start(start as u64))
                        .and_then(|_| f.read_exact(&mut b))
                        .map_err(|e| Error::io(&self.path, &e))?;
                    Cow::Owned(b)
                }
            },
        ))
    }

    /// A tensor as f32 values (any type kiln reads, dequantized), dims checked.
    pub fn f32s(&self, name: &str, dims: &[usize]) -> Result<Vec<f32>> {
        let (dtype, b) = self.tensor_bytes(name, dims)?;
        if dtype == DType::F32 {
            return Ok(crate::io::f32s_le(&b));
        }
        let cols = dims[0];
        Ok(QMatrix::from_bytes(dtype, b.len() / byte_size(dtype, cols).unwrap_or(1).max(1), cols, &b)?.dequantize())
    }

    /// A matrix [rows, cols] (stored with dims [cols, rows]) in its stored type: quantized and half blocks
    /// stay as they are (`QMatrix`), F32 stays f32.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let (dtype, b) = self.tensor_bytes(name, &[cols, rows])?;
        if dtype == DType::F32 {
            return Ok(Matrix::F32 { rows, cols, w: crate::io::f32s_le(&b) });
        }
        Ok(Matrix::Quantized(
            QMatrix::from_bytes(dtype, rows, cols, &b)
                .map_err(|e| Error::Data(format!("{}: tensor `{name}`: {e}", self.path.display())))?,
        ))
    }
}

/// A weight matrix [rows, cols] as the file stores it: quantized (or half) blocks, or plain f32.
pub enum Matrix {
    Quantized(QMatrix),
    F32 { rows: usize, cols: usize, w: Vec<f32> },
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Quantized(q) => q.rows(),
            Matrix::F32 { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Matrix::Quantized(q) => q.cols(),
            Matrix::F32 { cols, .. } => *cols,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Matrix::Quantized(q) => q.dtype(),
            Matrix::F32 { .. } => DType::F32,
        }
    }

    /// out[n, rows] = x[n, cols] · Wᵀ, quantized weights on integer products with x quantized per block
    /// (`QMatrix::matmul_t_q8`: 16 or 8 bits as `scratch.wide` says; `scratch` holds x's blocks), or with
    /// `scratch.exact` the exact product on f32 x.
    pub fn matmul_t(&self, x: &[f32], n: usize, out: &mut [f32], scratch: &mut Q8Rows) -> Result<()> {
        match self {
            Matrix::Quantized(q) if scratch.exact => q.matmul_t(x, n, out),
            Matrix::Quantized(q) => q.matmul_t_q8(x, n, out, scratch),
            Matrix::F32 { rows, cols, w } => {
                let (rows, cols) = (*rows, *cols);
                if x.len() != n * cols || out.len() != n * rows {
                    return Err(Error::Shape(format!("f32 weight [{rows}, {cols}] times x of {} values", x.len())));
                }
                use rayon::prelude::*;
                out.par_chunks_mut(rows).zip(x.par_chunks(cols)).for_each(|(o, xb)| {
                    for (r, o) in o.iter_mut().enumerate() {
                        *o = w[r * cols..(r + 1) * cols].iter().zip(xb).map(|(a, b)| a * b).sum();
                    }
                });
                Ok(())
            }
        }
    }

    /// `matmul_t` of several matrices with the same input, in one parallel pass when all are quantized.
    pub fn matmul_t_many(
        mats: &[&Matrix],
        x: &[f32],
        n: usize,
        outs: &mut [&mut [f32]],
        scratch: &mut Q8Rows,
    ) -> Result<()> {
        let q: Option<Vec<&QMatrix>> =
            mats.iter().map(|m| if let Matrix::Quantized(q) = m { Some(q) } else { None }).collect();
        match q {
            Some(q) if !scratch.exact => QMatrix::matmul_t_q8_many(&q, x, n, outs, scratch),
            _ => {
                for (m, out) in mats.iter().zip(outs.iter_mut()) {
                    m.matmul_t(x, n, out, scratch)?;
                }
                Ok(())
            }
        }
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Matrix::Quantized(q) => q.dequantize_row_into(r, out),
            Matrix::F32 { cols, w, .. } => {
                out.copy_from_slice(&w[r * cols..(r + 1) * cols]);
                Ok(())
            }
        }
    }
}
