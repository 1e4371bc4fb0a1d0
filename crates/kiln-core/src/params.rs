//! The parameter store: every weight of a model, by name (`dense_1.kernel`), apart from the tape.
//!
//! A `Graph` (one tape) reads its parameters through an `Arc<ParamStore>`, so one trained model can lend
//! the same store to several inference tapes at once (a server answering from many threads) without a copy
//! and without a lock. Training changes values through `Arc::make_mut`, which copies nothing while the
//! training tape is the only holder (always, since `fit` takes the model by `&mut`).

use crate::backend::{DevVec, Prepacked};
use crate::dtype::DType;
use crate::quant::QMatrix;
use crate::{Error, Float, Result, Shape};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One named parameter.
#[derive(Clone, Debug)]
pub struct Param<T> {
    pub name: String,
    pub shape: Shape,
    /// The values, row-major; empty when the parameter is quantized (`quant`).
    pub value: Vec<T>,
    /// Non-trainable parameters (batch-norm moving statistics) are saved but never get gradients.
    pub trainable: bool,
    /// A matrix kernel [in, out] held block-quantized instead (GGUF's Q8_0, Q4_0, Q4_1, or f16/bf16), as its
    /// transpose [out, in] quantized along `in`, the layout GGUF files use: for inference only.
    pub quant: Option<QMatrix>,
}

impl<T> Param<T> {
    /// The storage type: f32/f64 as `T`, or the quantized one.
    pub fn dtype(&self) -> DType
    where
        T: Float,
    {
        match &self.quant {
            Some(q) => q.dtype(),
            None => T::DTYPE.parse().expect("f32 and f64 are dtypes"),
        }
    }

    /// Bytes the values take (quantized blocks when quantized).
    pub fn bytes(&self) -> usize {
        match &self.quant {
            Some(q) => q.dtype().bytes_for(q.rows() * q.cols()).unwrap_or(0),
            None => self.value.len() * std::mem::size_of::<T>(),
        }
    }
}

/// A handle to a parameter of a store; valid for the store's whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(pub usize);

/// Parameters in the order they were added, with a name index. Names are unique.
#[derive(Clone, Debug)]
pub struct ParamStore<T> {
    params: Vec<Param<T>>,
    by_name: HashMap<String, usize>,
    prepacked: PackCache,
    device: DeviceCache<T>,
}

impl<T> Default for ParamStore<T> {
    fn default() -> Self {
        ParamStore {
            params: Vec::new(),
            by_name: HashMap::new(),
            prepacked: PackCache::default(),
            device: DeviceCache(Vec::new()),
        }
    }
}

/// Each parameter's copy in a device backend's memory (`ParamStore::on_device`), tagged with that backend,
/// made on first use and forgotten with the layouts of `PackCache` (every mutable borrow of the parameter),
/// so every tape reading this store (training, inference from several threads) shares one upload per change.
struct DeviceCache<T>(Vec<DeviceSlot<T>>);

/// The backend's identity and the copy in its memory.
type DeviceSlot<T> = Mutex<Option<(usize, Arc<DevVec<T>>)>>;

impl<T> DeviceCache<T> {
    fn forget(&mut self, i: usize) {
        self.0[i] = Mutex::new(None);
    }
}

impl<T> Clone for DeviceCache<T> {
    fn clone(&self) -> Self {
        DeviceCache(self.0.iter().map(|_| Mutex::new(None)).collect())
    }
}

impl<T> std::fmt::Debug for DeviceCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.iter().filter(|c| c.lock().map(|c| c.is_some()).unwrap_or(false)).count();
        write!(f, "{n} on a device")
    }
}

/// Each parameter's backend layout (`ParamStore::prepacked`), made on first use. Every mutable borrow of a
/// parameter goes through the store (`get_mut`, `all_mut`, `quantize`), which forgets that parameter's
/// layout, so a layout never outlives the values it was made from. A clone starts empty: `Arc::make_mut`
/// clones a shared store just before changing it.
#[derive(Default)]
struct PackCache(Vec<OnceLock<Option<Arc<Prepacked>>>>);

impl PackCache {
    fn forget(&mut self, i: usize) {
        self.0[i] = OnceLock::new();
    }
}

impl Clone for PackCache {
    fn clone(&self) -> Self {
        PackCache(self.0.iter().map(|_| OnceLock::new()).collect())
    }
}

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} prepacked", self.0.iter().filter(|c| matches!(c.get(), Some(Some(_)))).count())
    }
}

impl<T: Float> ParamStore<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter; the name must be new and `value` must fill `shape`.
    pub fn add(&mut self, name: &str, shape: &[usize], value: Vec<T>, trainable: bool) -> Result<ParamId> {
        let shape = Shape::new(shape)?;
        if value.len() != shape.numel() {
            return Err(Error::Shape(format!("parameter {name}: {} values given for shape {shape}", value.len())));
        }
        if self.by_name.contains_key(name) {
            return Err(Error::Invalid(format!("a parameter named `{name}` exists already: names must be unique")));
        }
        self.by_name.insert(name.to_string(), self.params.len());
        self.params.push(Param { name: name.to_string(), shape, value, trainable, quant: None });
        self.prepacked.0.push(OnceLock::new());
        self.device.0.push(Mutex::new(None));
        Ok(ParamId(self.params.len() - 1))
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn all(&self) -> &[Param<T>] {
        &self.params
    }

    pub(crate) fn all_mut(&mut self) -> &mut [Param<T>] {
        self.prepacked.0.iter_mut().for_each(|c| *c = OnceLock::new());
        self.device.0.iter_mut().for_each(|c| *c = Mutex::new(None));
        &mut self.params
    }

    pub fn get(&self, p: ParamId) -> &Param<T> {
        &self.params[p.0]
    }

    pub fn get_mut(&mut self, p: ParamId) -> &mut Param<T> {
        self.prepacked.forget(p.0);
        self.device.forget(p.0);
        &mut self.params[p.0]
    }

    /// Parameter `p`'s values as `make` lays them out for a backend's products (`Backend::prepack`), made by
    /// the first call and shared by every tape reading this store until the parameter is next changed. None
    /// when `make` gives none.
    pub(crate) fn prepacked(
        &self,
        p: ParamId,
        make: impl FnOnce(&Param<T>) -> Option<Prepacked>,
    ) -> Option<Arc<Prepacked>> {
        self.prepacked.0[p.0].get_or_init(|| make(&self.params[p.0]).map(Arc::new)).clone()
    }

    /// Parameter `p`'s copy in the backend memory identified by `backend` (`Backend::memory_id`), made by
    /// `make` on the first call and shared by every tape reading this store until the parameter is next
    /// changed (or another backend's memory asks). None when `make` gives none.
    pub(crate) fn on_device(
        &self,
        p: ParamId,
        backend: usize,
        make: impl FnOnce(&Param<T>) -> Option<DevVec<T>>,
    ) -> Option<Arc<DevVec<T>>> {
        let mut slot = self.device.0[p.0].lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, d)) = &*slot
            && *b == backend
        {
            return Some(d.clone());
        }
        let d = Arc::new(make(&self.params[p.0])?);
        *slot = Some((backend, d.clone()));
        Some(d)
    }

    /// Parameter `p` and its copy in the backend memory identified by `backend`, both writable, for an
    /// optimizer step taken there (`Graph::update_on_backend`), which writes both. The copy is made by `make`
    /// when there is none for that memory, and made afresh when a tape still holds the old one; the layout
    /// `prepacked` made from the old values is forgotten. None when `make` gives none.
    pub(crate) fn with_device_mut(
        &mut self,
        p: ParamId,
        backend: usize,
        make: impl FnOnce(&Param<T>) -> Option<DevVec<T>>,
    ) -> Option<(&mut Param<T>, &mut DevVec<T>)> {
        self.prepacked.forget(p.0);
        let slot = self.device.0[p.0].get_mut().unwrap_or_else(|e| e.into_inner());
        let reuse =
            matches!(slot, Some((b, d)) if *b == backend && Arc::strong_count(d) == 1 && Arc::weak_count(d) == 0);
        if !reuse {
            *slot = Some((backend, Arc::new(make(&self.params[p.0])?)));
        }
        let d = slot.as_mut().and_then(|(_, d)| Arc::get_mut(d))?;
        Some((&mut self.params[p.0], d))
    }

    /// The parameter called `name`, if any.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).map(|&i| ParamId(i))
    }

    pub fn by_name(&self, name: &str) -> Option<&Param<T>> {
        self.id(name).map(|p| &self.params[p.0])
    }
}

impl ParamStore<f32> {
    /// Stores the matrix kernel `p` ([in, out], `in` a multiple of 32) as `dtype` (block-quantized or halves), for
    /// inference: its f32 values are dropped and it is no longer trainable.
    pub fn quantize(&mut self, p: ParamId, dtype: DType) -> Result<()> {
        self.prepacked.forget(p.0);
        self.device.forget(p.0);
        let param = &mut self.params[p.0];
        let &[n_in, n_out] = param.shape.dims() else {
            return Err(Error::Shape(format!(
                "quantizing `{}`: only matrix kernels [in, out] are quantized, it is {}",
                param.name, param.shape
            )));
        };
        if param.quant.is_some() {
            return Err(Error::Invalid(format!("`{}` is quantized already", param.name)));
        }
        let mut t = vec![0.0f32; n_in * n_out];
        for i in 0..n_in {
            for o in 0..n_out {
                t[o * n_in + i] = param.value[i * n_out + o];
            }
        }
        let q = QMatrix::quantize(dtype, n_out, n_in, &t)
            .map_err(|e| Error::Invalid(format!("quantizing `{}` [{n_in}, {n_out}]: {e}", param.name)))?;
        param.quant = Some(q);
        param.value = Vec::new();
        param.trainable = false;
        Ok(())
    }
}
