//! The optimizer's step where a backend keeps the parameters (`Graph::update_on_backend`): on a GPU, each
//! parameter's copy there is updated in place from its gradient there, so a step moves no gradient down and
//! no parameter up. The measured reason (tools/gpu_check.sh on an H200, 2026-12-04): of the MNIST CNN's 1.55
//! s per epoch, 0.30 s went to uploading the parameters after each host step, and most of 0.7 s outside the
//! ops to the gradients coming down and Adam on the host.

use super::{Graph, grad_to_backend, upload_to};
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
    /// own or no kernel for a parameter's step (`Backend::can_update`): the caller then steps on the host.
    /// Everything a step needs is made ready first (gradients, device copies, slots: none of which changes a
    /// value), so that no parameter is updated unless every one is.
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
        let stepped = |store: &crate::params::ParamStore<T>, i: usize| {
            let p = store.get(ParamId(i));
            p.trainable && !p.value.is_empty()
        };
        let n = self.param_grads.len().min(store.len());
        if !(0..n).all(|i| !stepped(store, i) || backend.can_update(&u(store.get(ParamId(i))))) {
            return false;
        }
        for (i, slot) in slots.iter_mut().enumerate().take(n) {
            if !stepped(store, i) {
                continue;
            }
            // The gradient where the backend computes: as backward left it there, or the zeros a fresh one
            // stands for, or what host code left (a regularizer's term added), copied up.
            let (dev, grad) = (&mut self.param_gdev[i], &mut self.param_grads[i]);
            grad_to_backend(&*backend, dev, &mut self.param_fresh[i], grad, false);
            if dev.is_none() || store.with_device_mut(ParamId(i), key, |p| upload_to(&*backend, &p.value)).is_none() {
                return false;
            }
            if slot.is_none() {
                let len = grad.len();
                // The host's slot when it has one (a restored checkpoint's), else zeros.
                let made = |h: Option<&Vec<T>>| match h {
                    Some(h) if h.len() == len => upload_to(&*backend, h),
                    _ => backend.alloc(len).map(|mut d| {
                        d.zero();
                        d
                    }),
                };
                let (Some(s1), Some(s2)) = (made(host.0.get(i)), made(host.1.get(i))) else { return false };
                *slot = Some([s1, s2]);
            }
        }
        for (i, slot) in slots.iter_mut().enumerate().take(n) {
            if !stepped(store, i) {
                continue;
            }
            // Each of these was made ready above (a device copy that is the store's alone, slots, gradient).
            const READY: &str = "made ready in the first pass";
            let (param, w) = store.with_device_mut(ParamId(i), key, |_| None).expect(READY);
            let [s1, s2] = slot.as_mut().expect(READY);
            let g = self.param_gdev[i].as_ref().expect(READY);
            let (wv, gv) = (BufMut::Dev(w.view_mut()), Buf::Dev(g.view()));
            backend.update(u(param), wv, gv, BufMut::Dev(s1.view_mut()), BufMut::Dev(s2.view_mut()));
            w.copy_to(&mut param.value);
        }
        self.zero_grads();
        true
    }
}
