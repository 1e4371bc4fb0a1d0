//! Embedding bags as one op (PyTorch's EmbeddingBag): each row's output is a weighted sum of table rows,
//! y[b] = Σ_l w[b, l] · table[ids[b, l]], so a bag of L ids costs L row reads instead of an [n, L, D]
//! gather, a broadcast multiply and a sum (measured on textbench's bag: those three took 0.9 s of a
//! 1.3 s epoch, in the broadcast multiply's general index arithmetic above all). The mean of a bag's
//! non-padding vectors is the weights 1/count on its ids and 0 on padding.
//!
//! Backward: dtable[ids[b, l]] += w[b, l] · dy[b] (ids with weight 0 touch nothing).

use crate::backend::Buf;
use crate::graph::{BackCtx, Op, Var};
use crate::{Error, Float, Graph, Result};

impl<T: Float> Graph<T> {
    /// y[n, D] = Σ_l weights[b, l] · table[ids[b, l]] over table [V, D], ids and weights [n, L] (row-major).
    pub fn embedding_bag(&mut self, table: Var, ids: &[u32], weights: &[T], len: usize) -> Result<Var> {
        let st = self.shape(table);
        if st.rank() != 2 || len == 0 || !ids.len().is_multiple_of(len) || weights.len() != ids.len() {
            return Err(Error::Shape(format!(
                "embedding_bag: table {st}, {} ids and {} weights in bags of {len}: want [V, D] and n·L of each",
                ids.len(),
                weights.len()
            )));
        }
        let (vocab, d, n) = (st.dim(0), st.dim(1), ids.len() / len);
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Shape(format!("embedding_bag: id {bad} is outside the table's {vocab} rows")));
        }
        let mut y = self.out(n * d);
        let (idx, w) = (self.ipool.copied(ids), self.pool.copied(weights));
        self.backend.embedding_bag(self.buf(table), Buf::Host(&idx), Buf::Host(&w), (n, len, d), y.view_mut());
        let rg = self.requires_grad(table);
        let v = self.push(Op::EmbeddingBag(table, len), crate::Shape::new(&[n, d])?, y, rg);
        self.keep_aux_i(v, idx);
        self.keep_aux_f(v, w);
        Ok(v)
    }
}

/// dtable[ids[b, l]] += w[b, l] · dy[b]
pub(crate) fn backward<T: Float>(ctx: &mut BackCtx<T>, i: usize, table: Var, len: usize, gy: Buf<T>) {
    if ctx.needs(table) {
        let d = ctx.shape(table).dim(1);
        let n = ctx.aux_i[i].len() / len;
        let (be, ids, w) = (ctx.backend, ctx.aux_i_buf(i), ctx.aux_buf(i));
        be.embedding_bag_backward(gy, ids, w, (n, len, d), ctx.grad_buf(table));
    }
}
