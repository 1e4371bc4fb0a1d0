//! Image augmentation against pixel positions worked out by hand: a single bright pixel shifted, rotated by
//! 90° and 180° and zoomed lands where the map says. `Augment::apply` draws its parameters from the `Rng` it is
//! given (shift y, shift x, angle, zoom, each uniform in [−range, range), only for the ranges that are set), so
//! a test reproduces the draws with a second `Rng` of the same seed and picks seeds whose draws are the angle,
//! zoom or shift it wants.

use kiln::core::Rng;
use kiln::data::augment::Augment;

/// The draws `apply` makes for one image: uniform in [−r, r) for each range, in order.
fn draws(seed: u64, ranges: &[f64]) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    ranges.iter().map(|&r| rng.uniform_range(-r, r)).collect()
}

/// The first seed whose draws satisfy `want`.
fn seed_where(ranges: &[f64], want: impl Fn(&[f64]) -> bool) -> (u64, Vec<f64>) {
    (0..50_000_000u64).map(|s| (s, draws(s, ranges))).find(|(_, d)| want(d)).expect("no seed gives the wanted draws")
}

/// An h×w one-channel image, 0 but for `v` at (y, x).
fn dot(h: usize, w: usize, (y, x): (usize, usize), v: f32) -> Vec<f32> {
    let mut img = vec![0.0; h * w];
    img[y * w + x] = v;
    img
}

fn augmented(aug: &Augment, img: &[f32], shape: (usize, usize, usize), seed: u64) -> Vec<f32> {
    let mut b = img.to_vec();
    aug.apply(&mut b, shape, &mut Rng::new(seed), &mut Vec::new());
    b
}

/// The position and value of the brightest pixel, and the sum of all the others.
fn brightest(img: &[f32], w: usize) -> ((usize, usize), f32, f32) {
    let (i, &v) = img.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    ((i / w, i % w), v, img.iter().sum::<f32>() - v)
}

/// Linear interpolation's weight of a pixel at distance d from the sampled point.
fn tent(d: f64) -> f64 {
    (1.0 - d.abs()).max(0.0)
}

#[test]
fn a_whole_pixel_shift_moves_the_dot_down_and_left_by_rows_of_h_and_columns_of_w() {
    // 7×9 with two channels: the shift is a fraction of the height for rows and of the width for columns.
    let (h, w, c) = (7, 9, 2);
    let aug = Augment { shift: 0.5, ..Default::default() };
    // ty in [−3.5, 3.5) rows, tx in [−4.5, 4.5) columns: a seed for ty ≈ +2 rows, tx ≈ −3 columns.
    let (seed, d) =
        seed_where(&[0.5, 0.5], |d| (d[0] * h as f64 - 2.0).abs() < 0.01 && (d[1] * w as f64 + 3.0).abs() < 0.01);
    // The dot at (1, 5) in channel 1 only.
    let mut img = vec![0.0; h * w * c];
    img[(w + 5) * c + 1] = 1.0;
    let out = augmented(&aug, &img, (h, w, c), seed);
    let ch = |k: usize| out.iter().skip(k).step_by(c).copied().collect::<Vec<f32>>();
    assert!(ch(0).iter().all(|&v| v == 0.0), "channel 0 stays empty");
    let ((y, x), v, rest) = brightest(&ch(1), w);
    assert_eq!((y, x), (3, 2), "(1, 5) + (2, −3); draws {d:?}");
    assert!(v > 0.97 && rest < 0.03, "the dot stays whole: {v}, rest {rest}");
}

#[test]
fn fractional_shifts_spread_the_dot_over_its_four_neighbours_by_linear_weights() {
    let (h, w) = (7, 9);
    let aug = Augment { shift: 0.2, ..Default::default() };
    let (y0, x0) = (3.0, 4.0);
    let img = dot(h, w, (3, 4), 1.0);
    // Two images in one batch: each gets its own draws, the second after the first's.
    let mut batch = [img.clone(), img.clone()].concat();
    for seed in [1u64, 2, 3, 17, 123] {
        batch[..h * w].copy_from_slice(&img);
        batch[h * w..].copy_from_slice(&img);
        aug.apply(&mut batch, (h, w, 1), &mut Rng::new(seed), &mut Vec::new());
        let d = draws(seed, &[0.2; 4]);
        for (k, out) in batch.chunks(h * w).enumerate() {
            let (ty, tx) = (d[2 * k] * h as f64, d[2 * k + 1] * w as f64);
            // The dot's forward image is the tent centred at (y0 + ty, x0 + tx).
            for y in 0..h {
                for x in 0..w {
                    let want = tent(y as f64 - y0 - ty) * tent(x as f64 - x0 - tx);
                    let got = out[y * w + x] as f64;
                    assert!((got - want).abs() < 1e-5, "seed {seed} image {k} ({y}, {x}): got {got}, want {want}");
                }
            }
            let (sum, cy, cx) = out.iter().enumerate().fold((0.0, 0.0, 0.0), |(s, a, b), (i, &v)| {
                (s + v as f64, a + v as f64 * (i / w) as f64, b + v as f64 * (i % w) as f64)
            });
            assert!((sum - 1.0).abs() < 1e-5, "nothing lost inside the image");
            assert!(
                (cy / sum - y0 - ty).abs() < 1e-5 && (cx / sum - x0 - tx).abs() < 1e-5,
                "centre moved by the shift"
            );
        }
    }
}

#[test]
fn a_90_degree_rotation_turns_the_image_a_quarter_turn_about_its_centre() {
    // Positive drawn angles turn the picture clockwise on screen (rows grow downward): (dy, dx) from the centre
    // goes to (dx, −dy). The draws are symmetric, so Keras's sign convention does not show in what is drawn.
    let aug = Augment { rotation: 180.0, ..Default::default() };
    let (plus, _) = seed_where(&[180.0], |d| (d[0] - 90.0).abs() < 1e-3);
    let (minus, _) = seed_where(&[180.0], |d| (d[0] + 90.0).abs() < 1e-3);
    // 7×9, centre (3, 4): the dot at (1, 5) is (−2, +1) from it.
    let (h, w) = (7, 9);
    let img = dot(h, w, (1, 5), 1.0);
    for (seed, want) in [(plus, (3 + 1, 4 + 2)), (minus, (3 - 1, 4 - 2))] {
        let (at, v, rest) = brightest(&augmented(&aug, &img, (h, w, 1), seed), w);
        assert_eq!(at, want, "seed {seed}");
        assert!(v > 0.99 && rest < 0.01, "{v}, rest {rest}");
    }
    // A whole square image: out[y][x] = in[n − 1 − x][y] (numpy's rot90(a, k=−1)).
    let n = 7;
    let img: Vec<f32> = (0..n * n).map(|i| i as f32).collect();
    let out = augmented(&aug, &img, (n, n, 1), plus);
    for y in 0..n {
        for x in 0..n {
            let want = img[(n - 1 - x) * n + y];
            assert!((out[y * n + x] - want).abs() < 0.01, "({y}, {x}): {} vs {want}", out[y * n + x]);
        }
    }
}

#[test]
fn a_180_degree_rotation_mirrors_the_dot_through_the_centre() {
    let aug = Augment { rotation: 180.0, ..Default::default() };
    let (seed, d) = seed_where(&[180.0], |d| d[0].abs() > 180.0 - 1e-3);
    let (h, w) = (7, 9);
    for (y0, x0) in [(1, 5), (0, 0), (6, 2)] {
        let (at, v, rest) = brightest(&augmented(&aug, &dot(h, w, (y0, x0), 1.0), (h, w, 1), seed), w);
        assert_eq!(at, (h - 1 - y0, w - 1 - x0), "angle {}", d[0]);
        assert!(v > 0.99 && rest < 0.01, "{v}, rest {rest}");
    }
}

#[test]
fn zoom_scales_distances_from_the_centre_by_the_drawn_factor() {
    // The factor is 1 + a draw from [−0.9, 0.9): a seed for 1.5 (zoom in) and one for 0.5 (zoom out).
    let aug = Augment { zoom: 0.9, ..Default::default() };
    let (in_seed, _) = seed_where(&[0.9], |d| (d[0] - 0.5).abs() < 1e-4);
    let (out_seed, _) = seed_where(&[0.9], |d| (d[0] + 0.5).abs() < 1e-4);
    let (h, w) = (7, 9);
    // Zoom in 1.5×: (1, 6) is (−2, +2) from the centre (3, 4) and goes to (−3, +3), i.e. (0, 7).
    let out = augmented(&aug, &dot(h, w, (1, 6), 1.0), (h, w, 1), in_seed);
    let (at, v, _) = brightest(&out, w);
    assert_eq!(at, (0, 7));
    assert!(v > 0.99, "{v}");
    // Its neighbours read the source 1/1.5 pixel away: weight 1/3 by linear interpolation.
    assert!((out[7 - 1] - 1.0 / 3.0).abs() < 1e-3 && (out[w + 7] - 1.0 / 3.0).abs() < 1e-3, "{out:?}");
    // Zoom out 0.5×: (1, 8) is (−2, +4) from the centre and goes to (−1, +2), i.e. (2, 6); nothing else is lit.
    let (at, v, rest) = brightest(&augmented(&aug, &dot(h, w, (1, 8), 1.0), (h, w, 1), out_seed), w);
    assert_eq!(at, (2, 6));
    assert!(v > 0.99 && rest < 0.01, "{v}, rest {rest}");
}
