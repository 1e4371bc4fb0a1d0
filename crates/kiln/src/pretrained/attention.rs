//! Scaled dot-product attention over several heads (Vaswani et al. 2017), written with the engine's ops:
//! every piece (products, softmax, masks) is already gradient-checked, so this is differentiable as it
//! stands and the reference a fused kernel would be tested against.
//!
//! Shapes (b texts of t tokens, h heads of width dh, width = h·dh), as the projections give them:
//! q, k, v [b·t, width] → per head [b, h, t, dh]; scores = q·kᵀ/√dh [b, h, t, t]; + mask bias [b, 1, 1, t]
//! (0 where a key is a token, a large negative number where it is padding); softmax over the keys;
//! · v [b, h, t, dh] → back to [b·t, width].

use kiln_core::{Error, Graph, Result, Var};

/// What a padded key adds to its scores: its softmax weight becomes exactly 0 next to any real key.
pub const MASKED: f32 = -1e30;

/// Multi-head attention of queries `q` over keys `k` and values `v`, each [b·t, width] (already projected),
/// for `b` sequences of `t` steps; `bias` [b, 1, 1, t] is added to the scores (see `key_padding_bias`).
#[allow(clippy::too_many_arguments)]
pub fn multi_head(
    g: &mut Graph<f32>,
    q: Var,
    k: Var,
    v: Var,
    b: usize,
    t: usize,
    heads: usize,
    bias: Option<Var>,
) -> Result<Var> {
    let width = g.shape(q).dims().last().copied().unwrap_or(0);
    if heads == 0 || !width.is_multiple_of(heads) || g.shape(q).numel() != b * t * width {
        return Err(Error::Shape(format!(
            "attention: queries {} for {b} sequences of {t} steps do not split into {heads} heads",
            g.shape(q)
        )));
    }
    let dh = width / heads;
    let split = |g: &mut Graph<f32>, x: Var, perm: &[usize]| -> Result<Var> {
        let x = g.reshape(x, &[b, t, heads, dh])?;
        g.permute(x, perm)
    };
    let qh = split(g, q, &[0, 2, 1, 3])?; // [b, h, t, dh]
    let kt = split(g, k, &[0, 2, 3, 1])?; // [b, h, dh, t]
    let vh = split(g, v, &[0, 2, 1, 3])?; // [b, h, t, dh]
    let scores = g.matmul(qh, kt)?; // [b, h, t, t]
    let scale = g.input(&[1], &[1.0 / (dh as f32).sqrt()])?;
    let mut scores = g.mul(scores, scale)?;
    if let Some(bias) = bias {
        scores = g.add(scores, bias)?;
    }
    let p = g.softmax(scores, 3)?;
    let o = g.matmul(p, vh)?; // [b, h, t, dh]
    let o = g.permute(o, &[0, 2, 1, 3])?; // [b, t, h, dh]
    g.reshape(o, &[b * t, width])
}

/// The score bias of a key padding mask: `keep` [b·t] is 1 for a token and 0 for padding.
pub fn key_padding_bias(g: &mut Graph<f32>, keep: &[f32], b: usize, t: usize) -> Result<Var> {
    let bias: Vec<f32> = keep.iter().map(|&m| if m > 0.0 { 0.0 } else { MASKED }).collect();
    g.input(&[b, 1, 1, t], &bias)
}
