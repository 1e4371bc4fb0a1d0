//! kiln's integration tests as one test binary: each file below was a binary of its own, and linking 23 copies
//! of kiln (thin LTO) took 23 minutes of CI's 38 on its two cores; one binary links once, and its tests run
//! in parallel across files. The allocation-counting tests stay binaries of their own (tests/no_alloc*.rs):
//! they install a global allocator.

mod augment;
mod callbacks;
mod checkpoint;
mod checkpoint_every;
mod config;
#[cfg(feature = "cuda")]
mod cuda;
mod data;
mod explain;
mod fuzz_readers;
mod graph_model;
mod init_reg;
mod keras;
mod llm;
mod load_weights;
mod model;
mod model_format;
mod onnx;
mod optimizers;
mod outputs;
mod prepare;
mod pretrained_bert;
mod quantized;
mod recommend;
mod rnn;
mod tabular;
mod targets;
mod tensorboard;
mod transformer;
