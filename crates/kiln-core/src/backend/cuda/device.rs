//! Where the CUDA backend's kernels run, behind four verbs: copy up, copy down, launch a kernel, multiply.
//! [`Engine::Gpu`] is the GPU through cudarc (NVRTC-compiled `kernels.cu`, cuBLAS); [`Engine::Sim`]
//! (feature `cuda-sim`) runs the same `kernels.cu`, compiled as C++ by build.rs, on the host with one
//! "thread" walking each kernel's grid-stride loop, and a plain column-major product in cuBLAS's place. The
//! simulation is how CI tests every kernel's index arithmetic and formula without a GPU (tests/suite/cuda.rs);
//! it cannot see what only parallel hardware shows (races, atomics' order), which the GPU run does.
//!
//! Kernel arguments travel as CUDA's launch API takes them: an array of pointers to each argument's value, in
//! the kernel's parameter order ([`launch!`]); both engines read that same array.

use crate::{Error, Float, Result};
use cudarc::cublas::CudaBlas;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DeviceRepr, ValidAsZeroBits};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

const PRELUDE: &str = include_str!("prelude.cu");
const KERNELS: &str = include_str!("kernels.cu");

/// The PTX target: compute capability 7.5 is the oldest both CUDA 12's and CUDA 13's NVRTC accept, and the
/// driver compiles it for the card it runs on (an H200 is 9.0).
const ARCH: &str = "compute_75";

/// The whole kernel source: the prelude, then the kernels once per element type.
pub fn kernel_source() -> String {
    let each =
        |t: &str, sfx: &str| format!("#define T {t}\n#define K(name) name##_{sfx}\n{KERNELS}\n#undef T\n#undef K\n");
    format!("{PRELUDE}\n{}{}", each("float", "f32"), each("double", "f64"))
}

/// The kernels' names (each compiled as `NAME_f32` and `NAME_f64`), read from kernels.cu.
pub(super) fn kernel_names() -> Vec<&'static str> {
    super::signatures::kernels(KERNELS).into_iter().map(|(name, _)| name).collect()
}

/// Compiles every kernel with NVRTC, which needs the NVRTC library (libnvrtc.so) but no GPU: CI runs this
/// to catch a kernel that does not compile. The error carries NVRTC's log.
pub fn compile_kernels() -> Result<cudarc::nvrtc::Ptx> {
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Device(
            "the NVRTC library (libnvrtc.so) was not found: install the CUDA toolkit or the PyPI package \
             nvidia-cuda-nvrtc-cu12, and put its lib folder on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let opts = cudarc::nvrtc::CompileOptions { arch: Some(ARCH), ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(kernel_source(), opts)
        .map_err(|e| Error::Device(format!("kiln's CUDA kernels do not compile: {e}")))
}

/// What a staged buffer may hold: f32, f64 (values) and u32 (indices).
pub trait Elem: DeviceRepr + ValidAsZeroBits + Copy + Default + Unpin + 'static {}
impl Elem for f32 {}
impl Elem for f64 {}
impl Elem for u32 {}

/// f32 and f64, with their kernels' suffix and cuBLAS product.
pub trait CudaFloat: Float + Elem {
    const SUFFIX: &'static str;

    /// cuBLAS's column-major C = op(A)·op(B) + beta·C on raw device pointers; (pointer, leading dimension).
    ///
    /// # Safety
    /// The pointers must address matrices of the sizes and leading dimensions given.
    #[allow(clippy::too_many_arguments)]
    unsafe fn blas_gemm(
        blas: &CudaBlas,
        ops: (cublasOperation_t, cublasOperation_t),
        mnk: (i32, i32, i32),
        a: (u64, i32),
        b: (u64, i32),
        beta: Self,
        c: (u64, i32),
    ) -> std::result::Result<(), cudarc::cublas::result::CublasError>;
}

macro_rules! cuda_float {
    ($t:ty, $sfx:literal, $f:ident) => {
        impl CudaFloat for $t {
            const SUFFIX: &'static str = $sfx;
            unsafe fn blas_gemm(
                blas: &CudaBlas,
                ops: (cublasOperation_t, cublasOperation_t),
                (m, n, k): (i32, i32, i32),
                a: (u64, i32),
                b: (u64, i32),
                beta: Self,
                c: (u64, i32),
            ) -> std::result::Result<(), cudarc::cublas::result::CublasError> {
                let alpha: $t = 1.0;
                let (pa, pb, pc) = (a.0 as *const $t, b.0 as *const $t, c.0 as *mut $t);
                unsafe {
                    cudarc::cublas::result::$f(
                        *blas.handle(),
                        ops.0,
                        ops.1,
                        m,
                        n,
                        k,
                        &alpha,
                        pa,
                        a.1,
                        pb,
                        b.1,
                        &beta,
                        pc,
                        c.1,
                    )
                }
            }
        }
    };
}
cuda_float!(f32, "f32", sgemm);
cuda_float!(f64, "f64", dgemm);

/// The GPU: one stream, cuBLAS on it, and the compiled kernels by full name.
pub(super) struct Gpu {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    funcs: HashMap<String, CudaFunction>,
    pub name: String,
}

fn dev_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Device(format!("{what}: {e}"))
}

impl Gpu {
    /// GPU 0 with the kernels compiled and loaded; one line naming what is missing otherwise.
    pub fn open() -> Result<Gpu> {
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Device(
                "no CUDA driver found (libcuda.so): this machine has no NVIDIA driver; use device \"cpu\"".into(),
            ));
        }
        let count = CudaContext::device_count().map_err(dev_err("the CUDA driver did not start"))?;
        if count < 1 {
            return Err(Error::Device("the CUDA driver found no GPU; use device \"cpu\"".into()));
        }
        let ctx = CudaContext::new(0).map_err(dev_err("could not open GPU 0"))?;
        // One stream orders everything, so cudarc's per-buffer events are not needed.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().unwrap_or_else(|_| "GPU 0".into());
        let stream = ctx.default_stream();
        let module = ctx.load_module(compile_kernels()?).map_err(dev_err("could not load kiln's CUDA kernels"))?;
        let mut funcs = HashMap::new();
        for kernel in kernel_names() {
            for sfx in ["f32", "f64"] {
                let full = format!("{kernel}_{sfx}");
                funcs.insert(full.clone(), module.load_function(&full).map_err(dev_err(&full))?);
            }
        }
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Device(
                "the cuBLAS library (libcublas.so) was not found: put the CUDA toolkit's lib folder on \
                 LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Device(format!("cuBLAS did not start: {e}")))?;
        Ok(Gpu { stream, blas, funcs, name })
    }
}

/// Where kernels run (see the module header).
pub(super) enum Engine {
    Gpu(Gpu),
    #[cfg(feature = "cuda-sim")]
    Sim,
}

/// One block of 256 threads per 256 elements, at most 2^20 blocks (the kernels' loops stride over the rest).
fn grid(n: usize) -> u32 {
    n.div_ceil(256).clamp(1, 1 << 20) as u32
}

impl Engine {
    /// `h.len()` elements at device address `src` into `h`, after every kernel queued before.
    pub fn down_from<E: Elem>(&self, src: u64, h: &mut [E]) {
        if h.is_empty() {
            return;
        }
        match self {
            Engine::Gpu(g) => {
                g.stream.context().bind_to_thread().unwrap_or_else(|e| panic!("CUDA: {e}"));
                unsafe { cudarc::driver::result::memcpy_dtoh_async(h, src, g.stream.cu_stream()) }
                    .unwrap_or_else(|e| panic!("CUDA: copy from the GPU: {e}"));
                g.stream.synchronize().unwrap_or_else(|e| panic!("CUDA: a kernel failed: {e}"));
            }
            #[cfg(feature = "cuda-sim")]
            Engine::Sim => unsafe { std::ptr::copy_nonoverlapping(src as *const E, h.as_mut_ptr(), h.len()) },
        }
    }

    /// Copies `bytes` from device address `src` to `dst`, queued after the work before.
    pub fn copy_on_device(&self, src: u64, dst: u64, bytes: usize) {
        if bytes == 0 || src == dst {
            return;
        }
        match self {
            Engine::Gpu(g) => {
                g.stream.context().bind_to_thread().unwrap_or_else(|e| panic!("CUDA: {e}"));
                unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, g.stream.cu_stream()) }
                    .unwrap_or_else(|e| panic!("CUDA: copy on the GPU: {e}"));
            }
            #[cfg(feature = "cuda-sim")]
            Engine::Sim => unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, bytes) },
        }
    }

    /// Where the tape's device memory comes from (memory.rs).
    pub fn home(&self) -> super::memory::Home {
        match self {
            Engine::Gpu(g) => super::memory::Home::Gpu(g.stream.clone()),
            #[cfg(feature = "cuda-sim")]
            Engine::Sim => super::memory::Home::Sim,
        }
    }

    /// Runs kernel `name`_`sfx` over `n` elements; `args` point to the argument values in parameter order.
    pub fn launch(&self, name: &str, sfx: &str, n: usize, args: &mut [*mut c_void]) {
        let full = format!("{name}_{sfx}");
        match self {
            Engine::Gpu(g) => {
                let f = g.funcs.get(&full).unwrap_or_else(|| panic!("CUDA kernel {full} is not in kernels.cu"));
                g.stream.context().bind_to_thread().unwrap_or_else(|e| panic!("CUDA: {e}"));
                let r = unsafe {
                    cudarc::driver::result::launch_kernel(
                        f.cu_function(),
                        (grid(n), 1, 1),
                        (256, 1, 1),
                        0,
                        g.stream.cu_stream(),
                        args,
                    )
                };
                r.unwrap_or_else(|e| panic!("CUDA kernel {full}: {e}"));
            }
            #[cfg(feature = "cuda-sim")]
            Engine::Sim => super::sim::launch(&full, args),
        }
    }

    /// Column-major C = op(A)·op(B) + beta·C, as cuBLAS's gemm: `t` says which operands are transposed,
    /// (m, n, k) the sizes of op(A) [m, k] and op(B) [k, n], and each matrix is (pointer, leading dimension).
    pub fn gemm<T: CudaFloat>(
        &self,
        t: (bool, bool),
        mnk: (usize, usize, usize),
        a: (u64, usize),
        b: (u64, usize),
        beta: T,
        c: (u64, usize),
    ) {
        match self {
            Engine::Gpu(g) => {
                // cuBLAS runs in the calling thread's current context.
                g.stream.context().bind_to_thread().unwrap_or_else(|e| panic!("CUDA: {e}"));
                let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
                let i = |v: usize| i32::try_from(v).unwrap_or_else(|_| panic!("cuBLAS: size {v} exceeds i32"));
                let r = unsafe {
                    T::blas_gemm(
                        &g.blas,
                        (op(t.0), op(t.1)),
                        (i(mnk.0), i(mnk.1), i(mnk.2)),
                        (a.0, i(a.1)),
                        (b.0, i(b.1)),
                        beta,
                        (c.0, i(c.1)),
                    )
                };
                r.unwrap_or_else(|e| panic!("cuBLAS gemm {mnk:?}: {e}"));
            }
            #[cfg(feature = "cuda-sim")]
            Engine::Sim => unsafe { super::sim::gemm(t, mnk, a, b, beta, c) },
        }
    }
}

/// Launches kernel `$name` for element type `$t` over `$n` elements. Each argument is boxed so that it has an
/// address for the launch's pointer array (CUDA's kernelParams), and the boxes live until the launch is queued
/// (CUDA copies the values at launch).
macro_rules! launch {
    ($cuda:expr, $t:ty, $name:literal, $n:expr; $($arg:expr),* $(,)?) => {{
        let mut store: Vec<Box<dyn std::any::Any>> = vec![$(Box::new($arg)),*];
        let mut args: Vec<*mut std::ffi::c_void> =
            store.iter_mut().map(|b| (&mut **b) as *mut dyn std::any::Any as *mut std::ffi::c_void).collect();
        $cuda.engine.launch($name, <$t as $crate::backend::cuda::CudaFloat>::SUFFIX, $n, &mut args);
        drop(store);
    }};
}
pub(super) use launch;
