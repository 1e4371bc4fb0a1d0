//! The kernels of kernels.cu as their signatures say: each `extern "C" __global__ void K(name)(params)` gives
//! its name and its parameters' types. device.rs loads the kernels by these names; build.rs (which includes
//! this file) writes the host simulation's trampolines from the types.

/// (name, parameter types) of every kernel in `src`, in order.
pub fn kernels(src: &str) -> Vec<(&str, Vec<&str>)> {
    const MARK: &str = "extern \"C\" __global__ void K(";
    src.split(MARK)
        .skip(1)
        .map(|rest| {
            let name_end = rest.find(')').expect("a kernel's name ends at `)`");
            let params = &rest[name_end + 2..];
            let params = &params[..params.find(')').expect("a kernel's parameters end at `)`")];
            // A parameter is its type and then its name: the type is what comes before the last identifier.
            let types = params
                .split(',')
                .map(|p| p.trim().trim_end_matches(|c: char| c.is_alphanumeric() || c == '_').trim())
                .collect();
            (&rest[..name_end], types)
        })
        .collect()
}
