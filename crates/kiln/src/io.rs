//! A saved model is one safetensors file: the weights under their parameter names ("dense.kernel", ...),
//! and the architecture and compile settings as JSON in the file's metadata. Python opens it with
//! `safetensors.safe_open`. Files are written to a temporary name and renamed, so a crash mid-write never
//! leaves a half-written model where a good one was.

use crate::model::{CompileConfig, InputSpec, NodeSpec, Sequential};
use crate::nn::LayerConfig;
use kiln_core::Error;
use kiln_core::Result;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const FORMAT_KEY: &str = "kiln.format";
const MODEL_KEY: &str = "kiln.model";
/// The format version: 2 holds graph models (named inputs, nodes naming what they read).
const FORMAT: &str = "kiln-model-2";
/// Version 1 (before graph models): one input shape and a chain of layers; still read, with the same
/// parameter names.
const FORMAT_1: &str = "kiln-sequential-1";
/// How table rows are prepared (models trained on tables only).
const PREP_KEY: &str = "kiln.preparation";

/// The architecture as stored in a model file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSpec {
    name: String,
    inputs: Vec<InputSpec>,
    nodes: Vec<NodeSpec>,
    /// The layers that are the model's outputs, when not just the last one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<String>,
    compile: Option<CompileConfig>,
}

/// The architecture as format 1 stored it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSpec1 {
    name: String,
    input_shape: Vec<usize>,
    layers: Vec<LayerConfig>,
    compile: Option<CompileConfig>,
}

impl From<ModelSpec1> for ModelSpec {
    fn from(s: ModelSpec1) -> ModelSpec {
        ModelSpec {
            name: s.name,
            inputs: vec![InputSpec { name: "input".into(), shape: s.input_shape }],
            nodes: s.layers.into_iter().map(|layer| NodeSpec { inputs: Vec::new(), layer }).collect(),
            outputs: Vec::new(),
            compile: s.compile,
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A link is written through (the file it names is replaced, the link kept); a folder or a device is not
    // replaced by a file (renaming over /dev/null would make it one).
    let linked;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            linked = std::fs::canonicalize(path).map_err(|e| Error::io(path, &e))?;
            linked.as_path()
        }
        _ => path,
    };
    if let Ok(m) = std::fs::metadata(path)
        && !m.is_file()
    {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: "exists and is not a regular file (a folder or a device); name a file to write".into(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Io {
            path: path.display().to_string(),
            message: format!("folder {} does not exist", dir.display()),
        });
    }
    let file = path
        .file_name()
        .ok_or_else(|| Error::Io { path: path.display().to_string(), message: "not a file path".into() })?;
    let tmp = dir.join(format!(".{}.{}.tmp", file.to_string_lossy(), std::process::id()));
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, &e));
    }
    Ok(())
}

impl Sequential {
    /// Saves weights and architecture to one safetensors file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        write_atomic(path, &self.to_safetensors(path, &[], Vec::new())?)
    }

    /// The model file's bytes, with `extra` tensors (name, values; stored 1-D) and metadata entries added.
    pub(crate) fn to_safetensors(
        &self,
        path: &Path,
        extra: &[(String, &[f32])],
        extra_meta: Vec<(String, String)>,
    ) -> Result<Vec<u8>> {
        if let Some((name, dtype)) = self.quantized_param() {
            return Err(Error::Invalid(format!(
                "save: `{name}` is quantized ({dtype}); kiln files hold f32 weights (save before quantizing)"
            )));
        }
        let (inputs, nodes) = self.spec();
        let (name, outputs, compile) = (self.name.clone(), self.outputs_set(), self.compile_config().cloned());
        let spec = ModelSpec { name, inputs, nodes, outputs, compile };
        let json =
            serde_json::to_string(&spec).map_err(|e| Error::Invalid(format!("cannot describe the model: {e}")))?;
        let mut meta = HashMap::from([(FORMAT_KEY.to_string(), FORMAT.to_string()), (MODEL_KEY.to_string(), json)]);
        if let Some(p) = &self.preparation {
            let prep = serde_json::to_string(p)
                .map_err(|e| Error::Invalid(format!("cannot describe the preparation: {e}")))?;
            meta.insert(PREP_KEY.to_string(), prep);
        }
        meta.extend(extra_meta);
        let params = self.graph.params();
        let mut named: Vec<(String, Vec<usize>, &[f32])> =
            params.iter().map(|p| (p.name.clone(), p.shape.dims().to_vec(), &p.value[..])).collect();
        named.extend(extra.iter().map(|(n, v)| (n.clone(), vec![v.len()], *v)));
        let bytes: Vec<Vec<u8>> =
            named.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
        let views = named
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), b).map_err(st_err(path))?))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, Some(meta)).map_err(st_err(path))
    }

    /// Loads a model saved by `save`: same architecture, same weights, same predictions.
    pub fn load(path: impl AsRef<Path>) -> Result<Sequential> {
        let path = path.as_ref();
        if path.is_dir() {
            let inside = path.join("model.safetensors");
            let hint = if inside.is_file() {
                format!("a run folder: its model is {}", inside.display())
            } else {
                "a folder, not a model file (.safetensors)".to_string()
            };
            return Err(Error::format(path, hint));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, &e))?;
        Sequential::from_bytes(path, &bytes)
    }

    /// `load` of a file's bytes already read (`path` names it in errors).
    pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Sequential> {
        let not_kiln = |why: String| Error::format(path, format!("not a kiln model: {why}"));
        let (_, meta) =
            SafeTensors::read_metadata(bytes).map_err(|e| not_kiln(format!("not a safetensors file ({e})")))?;
        let info = meta.metadata().as_ref();
        let format = info.and_then(|m| m.get(FORMAT_KEY));
        let json =
            || info.and_then(|m| m.get(MODEL_KEY)).ok_or_else(|| not_kiln("no architecture in the metadata".into()));
        let unreadable = |e: serde_json::Error| not_kiln(format!("unreadable architecture ({e})"));
        let spec: ModelSpec = match format.map(String::as_str) {
            Some(FORMAT) => serde_json::from_str(json()?).map_err(unreadable)?,
            Some(FORMAT_1) => serde_json::from_str::<ModelSpec1>(json()?).map_err(unreadable)?.into(),
            Some(f) => {
                return Err(not_kiln(format!(
                    "unsupported format `{f}` (this kiln reads {FORMAT} and {FORMAT_1}; a newer kiln wrote it?)"
                )));
            }
            None => return Err(not_kiln("a safetensors file without kiln's architecture metadata".into())),
        };
        let mut model = Sequential::from_spec(&spec.inputs, &spec.nodes, 0)
            .map_err(|e| not_kiln(format!("its architecture does not build: {e}")))?
            .named(&spec.name);
        if !spec.outputs.is_empty() {
            let outputs: Vec<&str> = spec.outputs.iter().map(String::as_str).collect();
            model.set_outputs(&outputs).map_err(|e| not_kiln(format!("its outputs do not fit its layers: {e}")))?;
        }
        if let Some(c) = spec.compile {
            model.compile_with(c)?;
        }
        if let Some(p) = info.and_then(|m| m.get(PREP_KEY)) {
            model.preparation =
                Some(serde_json::from_str(p).map_err(|e| not_kiln(format!("unreadable table preparation ({e})")))?);
        }
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| not_kiln(format!("corrupt tensor data ({e})")))?;
        let g = model.graph_mut();
        for i in 0..g.params().len() {
            let pid = kiln_core::ParamId(i);
            let (name, shape) = (g.param(pid).name.clone(), g.param(pid).shape);
            let t = tensors
                .tensor(&name)
                .map_err(|_| Error::format(path, format!("the file has no weights for `{name}`")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape.dims() {
                return Err(Error::format(
                    path,
                    format!("weights `{name}` are {:?} {:?}, expected F32 {}", t.dtype(), t.shape(), shape),
                ));
            }
            let dst = &mut g.param_mut(pid).value;
            for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            // A model whose weights went NaN predicts NaN for everything: refuse it by name.
            if let Some(k) = dst.iter().position(|v| !v.is_finite()) {
                return Err(Error::format(
                    path,
                    format!(
                        "weights `{name}` hold {} at index {k}: the model is broken (a run that diverged?); use an \
                         earlier checkpoint or train again",
                        dst[k]
                    ),
                ));
            }
        }
        Ok(model)
    }
}

pub(crate) fn st_err(path: &Path) -> impl Fn(safetensors::SafeTensorError) -> Error + '_ {
    move |e| Error::format(path, format!("safetensors: {e}"))
}

/// Little-endian f32 values of `bytes` (a safetensors or GGUF F32 tensor's data).
pub fn f32s_le(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
