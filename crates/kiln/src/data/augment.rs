//! Random image augmentation for training batches (Keras's RandomTranslation, RandomRotation, RandomZoom,
//! RandomFlip in one affine map per image). Each image of a training batch gets its own random shift,
//! rotation, zoom and flip, drawn from the training seed, so a run is reproducible; evaluation and
//! prediction see the images as they are. Pixels that come from outside the image are 0.

use kiln_core::{Error, Result, Rng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Largest shift either way, as a fraction of the height and of the width.
    pub shift: f32,
    /// Largest rotation either way, in degrees.
    pub rotation: f32,
    /// Largest change of scale: the zoom factor is drawn from [1 − zoom, 1 + zoom].
    pub zoom: f32,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.shift == 0.0 && self.rotation == 0.0 && self.zoom == 0.0 && !self.horizontal_flip
    }

    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: f32, max: f32| {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return Err(Error::Config(format!("augment.{name} must be between 0 and {max}, got {v}")));
            }
            Ok(())
        };
        check("shift", self.shift, 1.0)?;
        check("rotation", self.rotation, 180.0)?;
        check("zoom", self.zoom, 0.9)
    }

    /// Transforms each [h, w, c] image of `batch` in place; `tmp` is scratch for one image.
    pub fn apply(&self, batch: &mut [f32], (h, w, c): (usize, usize, usize), rng: &mut Rng, tmp: &mut Vec<f32>) {
        let img = h * w * c;
        tmp.resize(img, 0.0);
        let (cy, cx) = ((h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0);
        for image in batch.chunks_exact_mut(img) {
            let sym = |rng: &mut Rng, r: f64| if r > 0.0 { rng.uniform_range(-r, r) } else { 0.0 };
            let (ty, tx) = (sym(rng, self.shift as f64) * h as f64, sym(rng, self.shift as f64) * w as f64);
            let angle = sym(rng, self.rotation as f64).to_radians();
            let scale = 1.0 + sym(rng, self.zoom as f64);
            let flip = self.horizontal_flip && rng.uniform() < 0.5;
            // Each output pixel reads the source point that the forward map (flip, zoom, rotate about the
            // centre, shift) sends onto it.
            let (sin, cos) = angle.sin_cos();
            tmp.copy_from_slice(image);
            for y in 0..h {
                for x in 0..w {
                    let (dy, dx) = (y as f64 - cy - ty, x as f64 - cx - tx);
                    let (ry, rx) = ((cos * dy - sin * dx) / scale, (sin * dy + cos * dx) / scale);
                    let sy = ry + cy;
                    let sx = if flip { (w as f64 - 1.0) - (rx + cx) } else { rx + cx };
                    let out = &mut image[(y * w + x) * c..(y * w + x + 1) * c];
                    bilinear(tmp, (h, w, c), sy, sx, out);
                }
            }
        }
    }
}

/// The image's value at (y, x) by bilinear interpolation, 0 outside.
fn bilinear(src: &[f32], (h, w, c): (usize, usize, usize), y: f64, x: f64, out: &mut [f32]) {
    out.fill(0.0);
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = ((y - y0) as f32, (x - x0) as f32);
    for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
        for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
            let (yy, xx) = (y0 as i64 + dy, x0 as i64 + dx);
            let weight = wy * wx;
            if weight == 0.0 || yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                continue;
            }
            let p = &src[(yy as usize * w + xx as usize) * c..][..c];
            for (o, &v) in out.iter_mut().zip(p) {
                *o += weight * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_flip_and_shift_move_pixels_where_expected() {
        let (h, w) = (5, 6);
        let img: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        let mut rng = Rng::new(1);
        let mut tmp = Vec::new();
        let mut b = img.clone();
        Augment::default().apply(&mut b, (h, w, 1), &mut rng, &mut tmp);
        assert_eq!(b, img);
        // A flip that fires: mirror each row.
        let flip = Augment { horizontal_flip: true, ..Default::default() };
        let mut seen_flip = false;
        for _ in 0..8 {
            let mut b = img.clone();
            flip.apply(&mut b, (h, w, 1), &mut rng, &mut tmp);
            if b != img {
                for y in 0..h {
                    for x in 0..w {
                        assert_eq!(b[y * w + x], img[y * w + (w - 1 - x)]);
                    }
                }
                seen_flip = true;
            }
        }
        assert!(seen_flip);
        // A shift keeps the image's content, moved: the total changes only by what leaves or enters.
        let shift = Augment { shift: 0.2, ..Default::default() };
        let mut b = img.clone();
        shift.apply(&mut b, (h, w, 1), &mut rng, &mut tmp);
        assert!(b.iter().all(|v| v.is_finite()) && b != img);
        // Same seed, same result.
        let all = Augment { shift: 0.1, rotation: 15.0, zoom: 0.1, horizontal_flip: true };
        let (mut b1, mut b2) = (img.clone(), img.clone());
        all.apply(&mut b1, (h, w, 1), &mut Rng::new(9), &mut tmp);
        all.apply(&mut b2, (h, w, 1), &mut Rng::new(9), &mut tmp);
        assert_eq!(b1, b2);
    }
}
