//! With feature `cuda-sim` only: compiles the CUDA kernels (src/backend/cuda/*.cu) as host C++ for the
//! simulated CUDA engine (src/backend/cuda/sim.rs), and writes the Rust table of their trampolines.

fn main() {
    #[cfg(feature = "cuda-sim")]
    sim::build();
}

#[cfg(feature = "cuda-sim")]
#[path = "src/backend/cuda/signatures.rs"]
mod signatures;

#[cfg(feature = "cuda-sim")]
mod sim {
    use super::signatures;
    use std::fmt::Write;

    /// Makes CUDA C++ host C++: a kernel is a plain function, and one "thread" (index 0 of one block of one)
    /// walks each grid-stride loop whole; atomics are plain adds.
    const SHIM: &str = r#"
#include <algorithm>
#include <cmath>
#include <cstring>
using std::cos; using std::erfc; using std::exp; using std::fabs; using std::log; using std::max; using std::min;
using std::pow; using std::sin; using std::sqrt; using std::tanh;
struct KilnDim { long long x; };
static const KilnDim blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
static inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
template <typename T> static inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
"#;

    pub fn build() {
        let dir = std::path::Path::new("src/backend/cuda");
        let prelude = std::fs::read_to_string(dir.join("prelude.cu")).unwrap();
        let body = std::fs::read_to_string(dir.join("kernels.cu")).unwrap();
        println!("cargo:rerun-if-changed=src/backend/cuda/prelude.cu");
        println!("cargo:rerun-if-changed=src/backend/cuda/kernels.cu");
        let ks = signatures::kernels(&body);
        let mut cpp = format!("{SHIM}\n{prelude}\n");
        let mut rs = String::from("unsafe extern \"C\" {\n");
        let mut table = String::from("static KERNELS: &[(&str, unsafe extern \"C\" fn(*mut *mut c_void))] = &[\n");
        for (t, sfx) in [("float", "f32"), ("double", "f64")] {
            write!(cpp, "#define T {t}\n#define K(name) name##_{sfx}\n{body}\n").unwrap();
            for (name, types) in &ks {
                let args: Vec<String> = types.iter().enumerate().map(|(i, ty)| format!("*({ty}*)a[{i}]")).collect();
                writeln!(cpp, "extern \"C\" void K(kiln_sim_{name})(void** a) {{ K({name})({}); }}", args.join(", "))
                    .unwrap();
                writeln!(rs, "    fn kiln_sim_{name}_{sfx}(a: *mut *mut c_void);").unwrap();
                writeln!(table, "    (\"{name}_{sfx}\", kiln_sim_{name}_{sfx}),").unwrap();
            }
            cpp.push_str("#undef T\n#undef K\n");
        }
        rs.push_str("}\n");
        table.push_str("];\n");
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
        std::fs::write(out.join("cuda_sim.cpp"), cpp).unwrap();
        std::fs::write(out.join("cuda_sim_kernels.rs"), rs + &table).unwrap();
        cc::Build::new()
            .cpp(true)
            .file(out.join("cuda_sim.cpp"))
            .flag("-std=c++17")
            .flag_if_supported("-Wno-sign-compare")
            .flag_if_supported("-Wno-unused-parameter")
            .opt_level(2)
            .compile("kiln_cuda_sim");
    }
}
