//! Tests of the `kiln` binary as one test binary (one link instead of seven; see kiln's tests/suite).

mod bad_inputs;
mod cli;
mod common;
mod crash;
mod cv_search;
mod explain;
mod generate;
mod mpi;
mod pretrained;
mod recommend;
mod serve;
mod tables;
mod text;
