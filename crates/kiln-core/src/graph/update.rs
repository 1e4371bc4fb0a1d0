//! The optimizer's step where a backend keeps the parameters (`Graph::update_on_backend`): on a GPU, each
//! parameter's copy there is updated in place from its gradient there, so a step moves no gradient down and
//! no parameter up. The measured reason (tools/gpu_check.sh on an H200, 2026-12-04): of the MNIST CNN's 1.55
//! s per epoch, 0.30 s went to uploading the parameters after each host step, and most of 0.7 s outside the
//! ops to the gradients coming down and Adam on the host.

use super::Graph;
use crate::Float;
use crate::backend::{Buf, BufMut, DeviceSlots, Update};
use crate::params::{Param, ParamId};

impl<T: Float> Graph<T> {
    /// One optimizer step on every trainable parameter (`u` says which for each: lazy Adam's rows apply to
    /// matrices only), taken by the backend in its own memory (`Backend::update`): the parameter's copy there is updated from its gradient there, with the
    /// optimizer's two slots per parameter kept there too (`slots`; a missing one is made from `host`, the
    /// optimizer's slots on the host, which a restored checkpoint fills). Each parameter is then copied down,
    /// so its values on the host stay current for whatever reads them (metrics, callbacks, saving) and the
    /// next step finds the device copy current. The gradients are zero afterwards.
    ///
    /// Returns false, with the parameters and gradients as they were, when the backend has no memory of its
    /// own or no kernel for `u`: the caller then steps on the host.
    pub fn update_on_backend(
        &mut self,
        u: &dyn Fn(&Param<T>) -> Update,
        slots: &mut DeviceSlots<T>,
        host: (&[Vec<T>], &[Vec<T>]),
    ) -> bool {
        let Some(key) = self.backend.memory_id() else {
            return false;
        };
        // The tape's own references to the device copies go, so that the store's are the only ones.
        self.param_dev.iter_mut().for_each(|d| *d = None);
        let backend = self.backend.clone();
        let store = std::sync::Arc::make_mut(&mut self.params);
        slots.resize_with(store.len(), || None);
        for i in 0..self.param_grads.len().min(store.len()) {
            let len = store.get(ParamId(i)).value.len();
            if !store.get(ParamId(i)).trainable || len == 0 {
                continue;
            }
            // The gradient where the backend computes: as backward left it there, or the zeros a fresh one
            // stands for, or what host code left (a regularizer's term added), copied up.
            if self.param_gdev[i].is_none() {
                let Some(mut d) = backend.alloc(len) else { return false };
                match std::mem::take(&mut self.param_fresh[i]) {
                    true => d.zero(),
                    false => d.copy_from(&self.param_grads[i]),
                }
                self.param_gdev[i] = Some(d);
            }
            let upload = |p: &Param<T>| {
                let mut d = backend.alloc(len)?;
                d.copy_from(&p.value);
                Some(d)
            };
            let Some((param, w)) = store.with_device_mut(ParamId(i), key, upload) else {
                return false;
            };
            if slots[i].is_none() {
                let mut made = Vec::with_capacity(2);
                for h in [host.0.get(i), host.1.get(i)] {
                    let Some(mut d) = backend.alloc(len) else { return false };
                    match h {
                        Some(h) if h.len() == len => d.copy_from(h),
                        _ => d.zero(),
                    }
                    made.push(d);
                }
                slots[i] = made.try_into().ok();
            }
            let [s1, s2] = slots[i].as_mut().expect("made above");
            let g = self.param_gdev[i].as_ref().expect("moved to the device above");
            let (wv, gv) = (BufMut::Dev(w.view_mut()), Buf::Dev(g.view()));
            if !backend.update(u(param), wv, gv, BufMut::Dev(s1.view_mut()), BufMut::Dev(s2.view_mut())) {
                // Only the first parameter can get here (a backend has the kernel or not): nothing changed.
                slots.clear();
                return false;
            }
            w.copy_to(&mut param.value);
        }
        self.zero_grads();
        true
    }
}
